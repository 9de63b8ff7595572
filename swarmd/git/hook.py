"""The pre-commit hook of a worker's worktree: it warns about (or, with swarm.toml's `[git] reservations =
"refuse"`, refuses) a commit that touches a path another agent holds an exclusive reservation on.

The hook reaches the worker's git through its environment (`core.hooksPath` given as GIT_CONFIG_COUNT/KEY/
VALUE), so the repository's config and the user's own commits are untouched; the repository's own
pre-commit hook, if any, still runs after it.

Run as `python -m swarmd.git.hook` (the hook script does) with SWARM_HOME and SWARM_AGENT set.
"""

import os
import shlex
import sys
from pathlib import Path

from swarmd.config import load_config
from swarmd.errors import SwarmError
from swarmd.git.repo import Git
from swarmd.git.reservations import Reservations
from swarmd.home import SwarmHome

SCRIPT = """#!/bin/sh
# swarmd: checks file reservations, then runs the repository's own pre-commit hook
{python} -m swarmd.git.hook || exit $?
own="$(git rev-parse --git-common-dir)/hooks/pre-commit"
if [ -x "$own" ]; then exec "$own" "$@"; fi
"""


def hooks_dir(home: SwarmHome) -> Path:
    """`<home>/git/hooks`: the `core.hooksPath` of every worker's git."""
    return home.root / "git" / "hooks"


def install_hook(home: SwarmHome) -> Path:
    """Write (or refresh) the hook script under the home; its directory."""
    directory = hooks_dir(home)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    script = directory / "pre-commit"
    text = SCRIPT.format(python=shlex.quote(sys.executable))
    if not script.exists() or script.read_text() != text:
        tmp = directory / ".pre-commit.tmp"
        tmp.write_text(text)
        tmp.chmod(0o700)
        os.replace(tmp, script)
    return directory


def hook_env(home: SwarmHome) -> dict[str, str]:
    """The environment that points a worker's git at the hook (config by environment, git 2.31 and later)."""
    return {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "core.hooksPath", "GIT_CONFIG_VALUE_0": str(hooks_dir(home))}


def check_commit(home: SwarmHome, agent: str, repo: Path) -> tuple[list[str], bool]:
    """Lines to print about the staged files that touch other agents' exclusive reservations, and whether
    the commit is refused."""
    staged = [f for f in Git(repo).run("diff", "--cached", "--name-only").splitlines() if f]
    conflicts = Reservations(home).touching(agent, staged)
    if not conflicts:
        return [], False
    refuse = load_config(home.config_file).git.reservations == "refuse"
    lines = [f"swarm: {c.requested} is reserved (exclusive) by {c.holder} ({c.held})" for c in conflicts]
    lines.append("swarm: commit refused ([git] reservations = \"refuse\")" if refuse else
                 "swarm: committing anyway (reservations are advisory); talk to the holder first")
    return lines, refuse


def main() -> int:
    """The hook: 0 to let the commit go on, 1 to refuse it (only with `reservations = "refuse"`)."""
    home, agent = os.environ.get("SWARM_HOME"), os.environ.get("SWARM_AGENT")
    if not home or not agent:
        return 0
    try:
        lines, refuse = check_commit(SwarmHome(Path(home)), agent, Path.cwd())
    except (SwarmError, OSError) as exc:
        print(f"swarm: reservations not checked: {exc}", file=sys.stderr)
        return 0
    for line in lines:
        print(line, file=sys.stderr)
    return 1 if refuse else 0


if __name__ == "__main__":
    sys.exit(main())

"""A small typed wrapper over the `git` command line: git itself does the work, this module only runs it.

Every call runs `git -C <dir> ...` with a fixed environment (no pager, no prompts, no editor) and raises
GitError with git's own message when it fails. Nothing here reimplements git.
"""

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from swarmd.errors import SwarmError

ZERO = "0" * 40
_QUIET_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "GIT_EDITOR": "true", "GIT_MERGE_AUTOEDIT": "no",
              "LC_ALL": "C"}


class GitError(SwarmError):
    """A git command failed: `args` is what was run, `output` what git printed (stderr, then stdout)."""

    def __init__(self, args: list[str], returncode: int, output: str) -> None:
        first = next((line for line in output.splitlines() if line.strip()), f"exit code {returncode}")
        super().__init__(f"git {' '.join(args[:3])}: {first.strip()}")
        self.args_run, self.returncode, self.output = args, returncode, output


@dataclass(frozen=True)
class Identity:
    """Who a commit is by: set as GIT_AUTHOR_* and GIT_COMMITTER_* (the user's git config is never needed)."""

    name: str
    email: str

    def env(self) -> dict[str, str]:
        """The environment variables that make git commit as this identity."""
        return {"GIT_AUTHOR_NAME": self.name, "GIT_AUTHOR_EMAIL": self.email,
                "GIT_COMMITTER_NAME": self.name, "GIT_COMMITTER_EMAIL": self.email}


class Git:
    """`git -C path`: `run` returns stdout (stripped of its last newline); `ok` says whether a command
    succeeded. Refs are full names (`refs/heads/x`) or anything `git rev-parse` takes."""

    def __init__(self, path: Path, *, env: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        self.env = env or {}

    def run(self, *args: str, env: dict[str, str] | None = None, input: str | None = None,
            timeout: float = 300.0) -> str:
        """Run git; its stdout. Raises GitError (with git's output) on a non-zero exit."""
        argv = ["git", "-C", str(self.path), *args]
        proc = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=timeout,
                              env={**os.environ, **_QUIET_ENV, **self.env, **(env or {})}, check=False)
        if proc.returncode != 0:
            raise GitError(list(args), proc.returncode, (proc.stderr + proc.stdout).strip())
        return proc.stdout[:-1] if proc.stdout.endswith("\n") else proc.stdout

    def ok(self, *args: str) -> bool:
        """Whether `git args...` exits 0 (its output is dropped)."""
        try:
            self.run(*args)
        except GitError:
            return False
        return True

    # ----- reading ----------------------------------------------------------------------------------------
    def toplevel(self) -> Path | None:
        """The top of the working tree `path` is in, or None outside any git repository."""
        try:
            return Path(self.run("rev-parse", "--show-toplevel"))
        except (GitError, OSError):
            return None

    def commit_of(self, ref: str) -> str | None:
        """The commit `ref` names, or None if it names none."""
        try:
            return self.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        except GitError:
            return None

    def is_ancestor(self, commit: str, of: str) -> bool:
        """Whether `commit` is reachable from `of` (or is it)."""
        return self.ok("merge-base", "--is-ancestor", commit, of)

    # ----- writing ----------------------------------------------------------------------------------------
    def update_ref(self, ref: str, new: str, old: str, message: str) -> None:
        """Move `ref` to `new` only if it is still at `old` (ZERO: only if it does not exist yet): a
        compare-and-swap by git's own ref lock. Raises GitError when `ref` moved meanwhile."""
        self.run("update-ref", "-m", message, ref, new, old)

    def commit_all(self, message: str, identity: Identity) -> str | None:
        """Stage everything (ignored files stay out) and commit it as `identity`; the new commit, or None when
        there was nothing to commit. Hooks are skipped: this is the supervisor keeping leftovers, not an agent."""
        self.run("add", "-A")
        if self.ok("diff", "--cached", "--quiet"):
            return None
        self.run("commit", "--no-verify", "-q", "-m", message, env=identity.env())
        return self.run("rev-parse", "HEAD")


def valid_branch(name: str) -> bool:
    """Whether `name` can be a branch (git's own check-ref-format decides)."""
    return subprocess.run(["git", "check-ref-format", "--branch", name], capture_output=True,
                          check=False).returncode == 0

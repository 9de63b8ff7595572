"""The worktree's pre-commit hook: a commit touching another worker's exclusive reservation is warned about
(or refused, by setting); the repository's own hook still runs; the user's own commits never see ours."""

import os
import subprocess
from pathlib import Path

import pytest

from swarmd.git.hook import hook_env, install_hook
from swarmd.git.repo import Identity
from swarmd.git.reservations import Reservations
from swarmd.home import SwarmHome, init_home
from gitkit import isolate_git, make_repo


@pytest.fixture
def setup(swarm_home: SwarmHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[SwarmHome, Path]:
    isolate_git(monkeypatch, tmp_path)
    init_home(swarm_home)
    install_hook(swarm_home)
    return swarm_home, make_repo(tmp_path / "repo", {"src/a.py": "a\n", "b.txt": "b\n"})


def commit_as(home: SwarmHome, repo: Path, agent: str | None, path: str) -> subprocess.CompletedProcess[str]:
    (repo / path).write_text((repo / path).read_text() + "more\n")
    env = {**os.environ, **Identity(agent or "user", "x@example.invalid").env()}
    if agent:
        env.update({**hook_env(home), "SWARM_HOME": str(home.root), "SWARM_AGENT": agent})
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True, env=env)
    return subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", f"edit {path}"], capture_output=True,
                          text=True, env=env, check=False)


def test_commit_on_anothers_exclusive_reservation_warns_then_is_refused(setup: tuple[SwarmHome, Path]) -> None:
    home, repo = setup
    Reservations(home).reserve("w1", ["src/"])
    warned = commit_as(home, repo, "w2", "src/a.py")
    assert warned.returncode == 0 and "src/a.py is reserved (exclusive) by w1" in warned.stderr
    assert commit_as(home, repo, "w2", "b.txt").stderr == ""  # not reserved: silent
    assert commit_as(home, repo, "w1", "src/a.py").returncode == 0  # the holder's own commit
    with home.config_file.open("a") as f:
        f.write('\n[git]\nreservations = "refuse"\n')
    refused = commit_as(home, repo, "w2", "src/a.py")
    assert refused.returncode != 0 and "commit refused" in refused.stderr
    assert commit_as(home, repo, None, "src/a.py").returncode == 0, "the user's own commits are not checked"


def test_the_repositorys_own_hook_still_runs(setup: tuple[SwarmHome, Path]) -> None:
    home, repo = setup
    own = repo / ".git" / "hooks" / "pre-commit"
    own.write_text("#!/bin/sh\necho 'own hook ran' >&2\nexit 1\n")
    own.chmod(0o755)
    result = commit_as(home, repo, "w2", "b.txt")
    assert result.returncode != 0 and "own hook ran" in result.stderr

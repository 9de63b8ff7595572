"""The merge queue under SIGKILL: the supervisor is killed while merges are in flight and started again;
the integration branch only ever points at gated work, `swarm up` finishes or redoes the merge, and no commit
a worker made is ever lost (git's object database says so, not the ledger)."""

import json
import os
import random
import signal
import subprocess
from pathlib import Path

import pytest

from protocol.task import TaskStatus
from swarmd.git.views import queue_view
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.supervisor.daemon import running_pid, wait_exit
from conftest import run_cli
from gitkit import dangling_commits, git, isolate_git, make_repo, task_commits
from swarmkit import init_home, wait_until

INTEGRATION = "swarm/kills/_integration"


def reachable(repo: Path) -> set[str]:
    """Every commit reachable from a ref or a worktree's HEAD. (A worktree being added at this moment has no
    HEAD yet and makes `--all` fail: asked again until git answers.)"""
    def ask() -> set[str] | None:
        proc = subprocess.run(["git", "-C", str(repo), "rev-list", "--all"], capture_output=True, text=True)
        return set(proc.stdout.split()) if proc.returncode == 0 else None
    return wait_until(ask, 30, "git rev-list --all to answer")


def gated_tip(repo: Path, validated: set[str]) -> None:
    """Every commit the integration branch adds to the start is a queue merge of a validated task, and the
    tip's tree passes the gate (every file it has holds what its task wrote)."""
    for line in git(repo, "log", "--first-parent", "--format=%H %ae %s", INTEGRATION, "^main").splitlines():
        sha, author, subject = line.split(" ", 2)
        assert author == "merge-queue@swarm.invalid", line
        task = git(repo, "log", "-1", "--format=%(trailers:key=Swarm-Task,valueonly)", sha).strip()
        assert task in validated, f"{task} landed without being validated"
    for name in git(repo, "ls-tree", "--name-only", INTEGRATION).split():
        if name.startswith("t") and name.endswith(".txt"):
            assert git(repo, "show", f"{INTEGRATION}:{name}") == name.removesuffix(".txt")


def run_with_kills(home: SwarmHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tasks: int, kills: int) -> int:
    isolate_git(monkeypatch, tmp_path)
    repo = make_repo(tmp_path / "repo", {"README": "kill campaign\n"})
    main_before = git(repo, "rev-parse", "main")
    init_home(home, max_workers=4)
    plan = tmp_path / "kills.json"
    plan.write_text(json.dumps({
        "git": {"checks": [{"kind": "command", "run": "sleep 0.2; ls t*.txt >/dev/null"}]},
        "defaults": {"workdir": "repo"},
        "tasks": [{"id": f"t{i}", "title": f"file {i}",
                   "description": f"echo t{i} > t{i}.txt && git add -A && git commit -q -m 't{i}'",
                   "validation": {"checks": [{"kind": "files_exist", "paths": [f"t{i}.txt"]}]}}
                  for i in range(tasks)]}))
    assert run_cli("swarm", "run", str(plan), "--home", str(home.root)).returncode == 0
    try:
        return kill_and_check(home, repo, tasks, kills, main_before)
    finally:
        run_cli("swarm", "down", "--teardown", "--home", str(home.root), timeout=60)


def kill_and_check(home: SwarmHome, repo: Path, tasks: int, kills: int, main_before: str) -> int:
    ledger = Ledger(home)
    rng = random.Random(11)
    done_kills = 0
    seen: set[str] = set()
    while done_kills < kills:
        finished = lambda: all(t.status == TaskStatus.DONE for t in ledger.board().values())  # noqa: E731
        if not wait_until(lambda: queue_view(ledger).waiting or finished(), 60, "a merge in flight"):
            break
        if finished():
            break
        pid = running_pid(home)
        assert pid is not None
        if rng.random() < 0.5:  # somewhere in the merge: a moment after it was queued, or at once
            wait_until(lambda: bool(git(repo, "worktree", "list")), 5, "git")
        seen |= task_commits(repo) & reachable(repo)
        os.kill(pid, signal.SIGKILL)
        assert wait_exit(pid, 30)
        done_kills += 1
        validated = {e.task for e in ledger.events(types=["merge_queued"])}
        gated_tip(repo, validated)
        assert run_cli("swarm", "up", "--home", str(home.root)).returncode == 0
        assert seen <= reachable(repo), "a worker's commit became unreachable after the restart"
    wait_until(lambda: all(t.status == TaskStatus.DONE for t in ledger.board().values()), 120, "every task landed")
    gated_tip(repo, {t.id for t in ledger.board().values()})
    assert {f"t{i}.txt" for i in range(tasks)} <= set(git(repo, "ls-tree", "--name-only", INTEGRATION).split())
    everything = task_commits(repo)
    assert seen <= everything <= reachable(repo)
    assert not set(dangling_commits(repo)) & everything, "git fsck found a dangling commit of a task"
    assert git(repo, "rev-parse", "main") == main_before
    return done_kills


def test_supervisor_killed_during_merges(swarm_home: SwarmHome, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_with_kills(swarm_home, tmp_path, monkeypatch, tasks=10, kills=8) >= 4


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_supervisor_killed_thirty_times_during_merges(swarm_home: SwarmHome, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_with_kills(swarm_home, tmp_path, monkeypatch, tasks=45, kills=32) >= 30

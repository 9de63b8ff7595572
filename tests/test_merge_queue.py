"""The merge queue's git work on real repositories: merge or rebase onto the tip, the gate on the merged
result, the compare-and-swap move, conflicts and red gates as outcomes; and an attempt's worktree."""

import subprocess
from pathlib import Path

import pytest

from protocol.task import Check
from swarmd.git.queue import QueueEntry, merge_entry
from swarmd.git.repo import Git
from swarmd.git.settings import GitSettings
from swarmd.git.worktrees import SetupError, create_attempt, remove_worktree
from swarmd.home import SwarmHome
from gitkit import USER, git, isolate_git, make_repo

INTEGRATION = "integ"


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    isolate_git(monkeypatch, tmp_path)
    path = make_repo(tmp_path / "repo", {"shared.txt": "one\n"})
    git(path, "branch", INTEGRATION, "main")
    return path


def branch(repo: Path, name: str, files: dict[str, str]) -> QueueEntry:
    git(repo, "checkout", "-q", "-b", name, "main")
    for path, text in files.items():
        (repo / path).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", name)
    commit = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")
    return QueueEntry(task=name, attempt=1, worker="w1", plan="p", repo=str(repo), branch=name, commit=commit,
                      integration=INTEGRATION)


def land(entry: QueueEntry, tmp_path: Path, gate: list[Check] | None = None, **kw):  # type: ignore[no-untyped-def]
    return merge_entry(entry, scratch=tmp_path / "scratch", task_checks=None, gate=gate or [], **kw)


def test_merge_then_conflict_then_gate(repo: Path, tmp_path: Path) -> None:
    first = branch(repo, "first", {"shared.txt": "one\nfirst\n"})
    second = branch(repo, "second", {"shared.txt": "one\nsecond\n"})
    third = branch(repo, "third", {"third.txt": "3\n"})
    landed = land(first, tmp_path)
    assert landed.landed and git(repo, "rev-parse", INTEGRATION) == landed.new
    assert git(repo, "rev-parse", f"{landed.new}^2") == first.commit
    assert land(first, tmp_path).landed and git(repo, "rev-parse", INTEGRATION) == landed.new  # once only

    conflict = land(second, tmp_path)
    assert not conflict.landed and "shared.txt" in conflict.conflict and "merge conflict" in conflict.reason
    assert git(repo, "rev-parse", INTEGRATION) == landed.new

    red = land(third, tmp_path, gate=[Check(kind="command", run="test -f missing.txt")])
    assert not red.landed and "FAIL command `test -f missing.txt`" in red.gate
    assert git(repo, "rev-parse", INTEGRATION) == landed.new
    assert land(third, tmp_path, gate=[Check(kind="files_exist", paths=["third.txt", "shared.txt"])]).landed


def test_a_branch_moved_during_the_gate_is_not_overwritten(repo: Path, tmp_path: Path) -> None:
    entry = branch(repo, "late", {"late.txt": "x\n"})
    other = git(repo, "commit-tree", "-p", "main", "-m", "someone else", "main^{tree}")
    moved = Check(kind="command", run=f"git update-ref refs/heads/{INTEGRATION} {other}")
    outcome = land(entry, tmp_path, gate=[moved])
    assert outcome.lost_race and not outcome.landed
    assert git(repo, "rev-parse", INTEGRATION) == other


def test_rebase_strategy_and_a_broken_scratch(repo: Path, tmp_path: Path) -> None:
    a = branch(repo, "a", {"a.txt": "a\n"})
    b = branch(repo, "b", {"b.txt": "b\n"})
    assert land(a, tmp_path, strategy="rebase").landed
    (tmp_path / "scratch" / ".git").unlink()  # what a kill in the middle can leave: a worktree git no longer knows
    out = land(b, tmp_path, strategy="rebase")
    assert out.landed
    assert git(repo, "log", "--format=%s", INTEGRATION).splitlines() == ["b", "a", "initial"]  # linear


def test_attempt_worktree_never_reuses_a_branch(repo: Path, tmp_path: Path) -> None:
    home = SwarmHome(tmp_path / "home")
    home.ensure_dirs()
    (repo / ".worktreeinclude").write_text(".env\n# comment\n../outside\n")
    (repo / ".env").write_text("SECRET=1\n")
    settings = GitSettings(integration=INTEGRATION)
    git(repo, "branch", "swarm/p/t", "main")  # left by an earlier run, maybe with work on it
    kept = git(repo, "rev-parse", "swarm/p/t")
    tree = create_attempt(home, repo, repo, plan="p", task="t", attempt=1, settings=settings)
    assert tree.branch == "swarm/p/t-r2" and git(repo, "rev-parse", "swarm/p/t") == kept
    assert (Path(tree.path) / ".env").read_text() == "SECRET=1\n"
    assert Git(Path(tree.path)).run("rev-parse", "--abbrev-ref", "HEAD") == tree.branch
    remove_worktree(tree, GitSettings(teardown=f"pwd > {tmp_path}/torn"))  # the teardown runs in it, then it goes
    assert (tmp_path / "torn").read_text().strip() == tree.path and not Path(tree.path).exists()
    assert git(repo, "rev-parse", tree.branch)  # the branch stays
    with pytest.raises(SetupError, match="exit code 3"):
        create_attempt(home, repo, repo, plan="p", task="t", attempt=2,
                       settings=GitSettings(integration=INTEGRATION, setup="exit 3"))


def test_a_merge_left_half_done_by_a_kill_is_cleared(repo: Path, tmp_path: Path) -> None:
    first = branch(repo, "first", {"shared.txt": "one\nfirst\n"})
    clash = branch(repo, "clash", {"shared.txt": "one\nclash\n"})
    later = branch(repo, "later", {"later.txt": "x\n"})
    assert land(first, tmp_path).landed
    scratch = tmp_path / "scratch"
    merging = subprocess.run(["git", "-C", str(scratch), *USER, "merge", "--no-edit", clash.commit],
                             capture_output=True, text=True)  # as a supervisor killed mid-merge leaves it
    assert merging.returncode != 0 and git(scratch, "rev-parse", "-q", "--verify", "MERGE_HEAD")
    made = (scratch / ".git").stat().st_ino
    assert land(later, tmp_path).landed
    assert git(repo, "show", f"{INTEGRATION}:shared.txt") == "one\nfirst"
    assert (scratch / ".git").stat().st_ino == made, "the merge was aborted in place, not the worktree made again"


def test_a_rebase_left_half_done_by_a_kill_is_aborted(repo: Path, tmp_path: Path) -> None:
    first = branch(repo, "first", {"shared.txt": "one\nfirst\n"})
    clash = branch(repo, "clash", {"shared.txt": "one\nclash\n"})
    later = branch(repo, "later", {"later.txt": "x\n"})
    assert land(first, tmp_path, strategy="rebase").landed
    scratch = tmp_path / "scratch"
    git(scratch, "checkout", "-q", "--detach", clash.commit)
    stuck = subprocess.run(["git", "-C", str(scratch), *USER, "rebase", first.commit], capture_output=True)
    assert stuck.returncode != 0  # a conflict: the rebase waits, as a kill mid-rebase would leave it
    outcome = land(later, tmp_path, strategy="rebase")
    assert outcome.landed, outcome.reason

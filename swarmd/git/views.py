"""What people ask of the git side, read from the ledger and git: an attempt's change (`swarm diff`), the
merge queue (`swarm queue`), landing the integration branch on a branch of theirs (`swarm land`), and the
worktrees and branches `swarm clean` may remove."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.event import Event, EventType
from protocol.task import Task, TaskStatus
from swarmd.errors import SwarmError
from swarmd.git.queue import QueueEntry
from swarmd.git.repo import Git, GitError
from swarmd.git.worktrees import AttemptTree
from swarmd.ledger.log import Ledger

GIT_EVENTS = [EventType.WORKTREE_CREATED.value, EventType.MERGE_QUEUED.value, EventType.TASK_COMPLETED.value,
              EventType.TASK_FAILED.value, EventType.WORKTREE_REMOVED.value]


class LandRefused(SwarmError):
    """`swarm land` would not be a fast-forward (or the branches are missing)."""


def attempts(ledger: Ledger) -> list[tuple[AttemptTree, str]]:
    """Every attempt's worktree the ledger knows, oldest first, with the worker it was made for."""
    found = []
    for event in ledger.events(types=[EventType.WORKTREE_CREATED.value]):
        tree = AttemptTree.from_detail({**event.detail, "task": event.task})
        if tree is not None:
            found.append((tree, str(event.detail.get("worker", ""))))
    return found


def find_attempt(ledger: Ledger, name: str) -> AttemptTree:
    """The latest attempt of task `name`, or the attempt of worker `name`. Raises SwarmError if none."""
    known = attempts(ledger)
    for tree, worker in reversed(known):
        if tree.task == name or worker == name:
            return tree
    raise SwarmError(f"no worktree for {name!r}: name a task or a worker that ran in a git worktree "
                     "(`swarm queue` and `swarm board` list them)")


def attempt_diff(tree: AttemptTree, *, stat: bool = False) -> str:
    """The attempt's change against the commit it started from, uncommitted edits included while its
    worktree exists."""
    args = ["diff", "--stat"] if stat else ["diff"]
    if Path(tree.path).is_dir():
        return Git(Path(tree.path)).run(*args, tree.base)
    return Git(Path(tree.repo)).run(*args, tree.base, f"refs/heads/{tree.branch}")


@dataclass
class QueueView:
    """The merge queue for `swarm queue`: rows of task, attempt, worker, branch, commit, integration, queued
    (ISO time), and for landed/failed ones `seconds` in the queue and the new tip or the failure's reason."""

    waiting: list[dict[str, Any]]
    landed: list[dict[str, Any]]
    failed: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        """{"waiting": [...], "landed": [...], "failed": [...]}"""
        return {"waiting": self.waiting, "landed": self.landed, "failed": self.failed}


def queue_view(ledger: Ledger) -> QueueView:
    """The queue as the ledger tells it: attempts waiting (in queue order), landed (with their seconds in
    the queue) and failed at the merge (conflict or gate)."""
    board = ledger.board()
    queued: dict[tuple[str, int], Event] = {}
    waiting, landed, failed = [], [], []
    for event in ledger.events(types=GIT_EVENTS):
        key = (event.task or "", event.detail.get("attempt"))
        if event.type == EventType.MERGE_QUEUED:
            queued[key] = event
        elif key in queued and event.type in (EventType.TASK_COMPLETED, EventType.TASK_FAILED):
            start = queued.pop(key)
            row = _row(start) | {"seconds": round((event.ts - start.ts).total_seconds(), 3)}
            if event.type == EventType.TASK_COMPLETED:
                landed.append(row | {"new": (event.detail.get("merge") or {}).get("new")})
            else:
                failed.append(row | {"reason": str(event.detail.get("reason", "")).splitlines()[0][:200]})
    for event in sorted(queued.values(), key=lambda e: e.seq):
        if _waiting(board.get(event.task or ""), event):
            waiting.append(_row(event))
    return QueueView(waiting, landed, failed)


def _row(event: Event) -> dict[str, Any]:
    entry = QueueEntry.from_detail({**event.detail, "task": event.task}, seq=event.seq)
    return {"task": event.task, "attempt": event.detail.get("attempt"), "worker": event.detail.get("worker"),
            "branch": entry.branch if entry else None, "commit": entry.commit if entry else None,
            "integration": entry.integration if entry else None, "queued": event.ts.isoformat()}


def _waiting(task: Task | None, event: Event) -> bool:
    return (task is not None and task.status == TaskStatus.VALIDATING and bool(task.attempts)
            and task.attempts[-1].number == event.detail.get("attempt"))


def land(repo: Path, integration: str, into: str) -> dict[str, str]:
    """Fast-forward branch `into` to the integration branch; refuse (LandRefused) unless it is a
    fast-forward. Where `into` is checked out, git's own `merge --ff-only` moves it (and that worktree);
    elsewhere the ref moves by compare-and-swap. Returns {"branch", "old", "new"}."""
    git = Git(repo)
    tip = git.commit_of(f"refs/heads/{integration}")
    old = git.commit_of(f"refs/heads/{into}")
    if tip is None:
        raise LandRefused(f"no integration branch {integration!r} in {repo}")
    if old is None:
        raise LandRefused(f"no branch {into!r} in {repo}: name one of yours with --into")
    if not git.is_ancestor(old, tip):
        raise LandRefused(f"{into} has commits that {integration} lacks: not a fast-forward, nothing moved "
                          f"(merge {into} into your work yourself, or land into a new branch)")
    checked_out = _worktree_of(git, into)
    try:
        if checked_out is not None:
            Git(checked_out).run("merge", "--ff-only", "-q", tip)
        else:
            git.update_ref(f"refs/heads/{into}", tip, old, f"swarm land {integration}")
    except GitError as exc:
        raise LandRefused(f"{into} was not moved: {exc}") from None
    return {"branch": into, "old": old, "new": tip}


def _worktree_of(git: Git, branch: str) -> Path | None:
    path = None
    for line in git.run("worktree", "list", "--porcelain").splitlines():
        if line.startswith("worktree "):
            path = Path(line.removeprefix("worktree "))
        elif line == f"branch refs/heads/{branch}":
            return path
    return None

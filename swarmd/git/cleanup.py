"""`swarm clean` for git: the worktrees of attempts that are over are removed (what they left uncommitted is
committed on their branch first); a branch is deleted only once its commits are on the integration branch,
or its task was cancelled by a person. Never-merged work stays on its branch."""

from dataclasses import dataclass
from pathlib import Path

from protocol.task import LIVE_STATUSES, Task, TaskStatus
from swarmd.config import Config
from swarmd.git.repo import Git, GitError
from swarmd.git.views import attempts
from swarmd.git.worktrees import AttemptTree, commit_leftovers, remove_worktree
from swarmd.ledger.log import Ledger


@dataclass(frozen=True)
class GitRemoval:
    """One thing `swarm clean` did (or would do) in git, or a branch it kept and why."""

    kind: str  # "worktree", "branch", or "kept" (a branch with work never merged)
    path: str
    reason: str


def clean_attempts(ledger: Ledger, config: Config, *, dry_run: bool = False) -> list[GitRemoval]:
    """Remove what attempts that are over left in git (see the module); what was (or would be) done."""
    board = ledger.board()
    done: list[GitRemoval] = []
    for tree, worker in attempts(ledger):
        task = board.get(tree.task)
        if task is None or _live(task, tree):
            continue
        settings = config.git_for(task.metadata, task.profile)
        if Path(tree.path).is_dir():
            done.append(GitRemoval("worktree", tree.path, f"attempt {tree.attempt} of {tree.task} is over"))
            if not dry_run:
                commit_leftovers(tree, worker or "worker", config.name, " (kept by swarm clean)")
                remove_worktree(tree, settings)
        done.append(_branch(tree, task, dry_run))
    return done


def _live(task: Task, tree: AttemptTree) -> bool:
    return task.status in LIVE_STATUSES and bool(task.attempts) and task.attempts[-1].number == tree.attempt


def _branch(tree: AttemptTree, task: Task, dry_run: bool) -> GitRemoval:
    git = Git(Path(tree.repo))
    tip = git.commit_of(f"refs/heads/{tree.branch}")
    if tip is None:
        return GitRemoval("kept", tree.branch, "already gone")
    merged = git.commit_of(f"refs/heads/{tree.integration}") is not None and git.is_ancestor(
        tip, f"refs/heads/{tree.integration}")
    if not merged and task.status != TaskStatus.CANCELLED:
        return GitRemoval("kept", tree.branch, f"holds work never merged into {tree.integration}")
    if not dry_run:
        try:
            git.run("update-ref", "-m", "swarm clean", "-d", f"refs/heads/{tree.branch}", tip)  # only if unmoved
        except GitError:
            return GitRemoval("kept", tree.branch, "moved while cleaning")
    why = "merged" if merged else f"{tree.task} was cancelled"
    return GitRemoval("branch", tree.branch, why)

"""Isolation and integration in the supervisor: an attempt in a git repository gets its own worktree; its
validated work waits in the merge queue, which lands one attempt at a time off the loop's thread. A task is
done only once its work is on the integration branch, so what waits on it starts from the merged result.

What the queue holds is in the ledger (`worktree_created`, `merge_queued`, and `task_completed` with the
merge), so a restarted supervisor finishes a merge that landed (git says so: the commit is on the branch)
or does it again.
"""

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from protocol.event import EventType
from protocol.task import AttemptOutcome, Task, TaskStatus
from swarmd.errors import ConfigError
from swarmd.git.hook import hook_env, install_hook
from swarmd.git.queue import MergeOutcome, QueueEntry, merge_entry, order, scratch_dir
from swarmd.git.repo import Git, GitError
from swarmd.git.settings import GitSettings, plan_of
from swarmd.git.worktrees import (AttemptTree, commit_leftovers, create_attempt, discovery_marks, has_commits,
                                  repository_of, worker_identity)
from swarmd.ledger.board import in_wave_order
from swarmd.ledger.log import StaleTransition
from swarmd.supervisor.state import SUPERVISOR, WorkerState

log = logging.getLogger("swarmd.supervisor")
MERGE_TRIES = 3  # merges of one attempt that may fail to run at all before the attempt counts as failed


class Integration:
    """The part of `Supervisor` that isolates attempts and runs the merge queue.

    A mixin: `trees` (task -> its live attempt's worktree), `merge_queue` (entries waiting), `merging` (the entry in
    flight), `merge_results` and `merge_errors` (task -> merges that could not run) are set up by the loop.
    """

    def git_settings(self, task: Task) -> GitSettings:
        """swarm.toml's `[git]` with the task's plan's over it and its profile's set-up and tear-down."""
        return self.config.git_for(task.metadata, task.profile)

    # ----- isolation --------------------------------------------------------------------------------------
    def isolate(self, task: Task, worker: str, attempt: int) -> AttemptTree | None:
        """The attempt's worktree, made now; None when the task is not isolated (isolation `none`, or `auto`
        outside a git repository). Raises ConfigError or GitError when it cannot be made."""
        settings = self.git_settings(task)
        if settings.isolation == "none":
            return None
        workdir = self.spawner.workdir_for(task)
        top = self._repository_with_commits(workdir)
        if top is None:
            if settings.isolation == "worktree":
                raise ConfigError(f"task {task.id} asks for isolation = \"worktree\" but {workdir} is not in a git "
                                  "repository with a commit")
            return None
        tree = create_attempt(self.home, top, workdir, plan=plan_of(task.metadata, self.config.name),
                              task=task.id, attempt=attempt, settings=settings, start=self._checkpointed(task))
        install_hook(self.home)
        detail = {k: v for k, v in tree.detail().items() if k != "task"}
        self.ledger.append(EventType.WORKTREE_CREATED, SUPERVISOR, task.id, worker=worker, **detail,
                           summary=f"{task.id}: {worker} works on branch {tree.branch} in {tree.path}")
        self.trees[task.id] = tree
        return tree

    def _repository_with_commits(self, workdir: Path) -> Path | None:
        """The top of the repository holding `workdir` if it has a commit, else None. git is asked (a process
        start, on the way to every worker's start) only when what its answer depends on has changed since it
        was last asked (`discovery_marks`: a repository made or removed), or while the repository has no commit."""
        marks = discovery_marks(workdir)
        known = self.git_tops.get(workdir)
        if known is not None and known[0] == marks:
            return known[1]
        top = repository_of(workdir)
        found = top if top is not None and has_commits(top) else None
        if top is None or found is not None:  # a repository without a commit yet is asked again next time
            self.git_tops[workdir] = (marks, found)
        return found

    def _checkpointed(self, task: Task) -> str | None:
        """The branch tip of the attempt before, when it handed over by CHECKPOINT: the next one goes on
        from there (a failed attempt's next one starts afresh from the integration tip)."""
        tree = self.trees.pop(task.id, None)
        if tree is None or not task.attempts or task.attempts[-1].outcome != AttemptOutcome.CHECKPOINT:
            return None
        commit_leftovers(tree, task.attempts[-1].worker or "worker", self.config.name, " (checkpoint)")
        return Git(Path(tree.path)).commit_of("HEAD")

    def worker_env(self, tree: AttemptTree, worker: str) -> dict[str, str]:
        """What a worker in a worktree is given: who it commits as, where it is, and the pre-commit hook."""
        return {**worker_identity(worker, self.config.name).env(), "SWARM_WORKTREE": tree.path,
                "SWARM_BRANCH": tree.branch, **hook_env(self.home)}

    def workdir_of(self, task: Task) -> Path:
        """Where the task's live attempt works and is checked: its worktree, else the task's directory."""
        tree = self.trees.get(task.id)
        return tree.workdir if tree is not None else self.spawner.workdir_for(task)

    def keep_leftovers(self, task_id: str, worker: WorkerState, note: str = "") -> str | None:
        """Commit what the attempt left uncommitted on its branch (by the worker); the branch's tip."""
        tree = self.trees.get(task_id)
        if tree is None or tree.attempt != worker.attempt:
            return None
        try:
            commit_leftovers(tree, worker.name, self.config.name, note)
            return Git(Path(tree.path)).commit_of("HEAD")
        except (GitError, OSError) as exc:
            self.ledger.append(EventType.CUSTOM, SUPERVISOR, task_id, summary=f"{task_id}: could not commit the "
                               f"attempt's leftovers: {exc}")
            return None

    # ----- the queue --------------------------------------------------------------------------------------
    def enqueue(self, task: Task, worker: WorkerState, commit: str) -> None:
        """The attempt passed its checks: its branch joins the merge queue; the worker's part is over."""
        tree = self.trees[task.id]
        event = self.ledger.append(EventType.MERGE_QUEUED, SUPERVISOR, task.id, summary=(
            f"{task.id} validated: {tree.branch} ({commit[:12]}) waits in the merge queue for {tree.integration}"),
            attempt=worker.attempt, worker=worker.name, plan=tree.plan, repo=tree.repo,
            branch=tree.branch, commit=commit, integration=tree.integration, subdir=tree.subdir)
        entry = QueueEntry.from_detail({**event.detail, "task": task.id}, seq=event.seq)
        assert entry is not None
        self.merge_queue.append(entry)
        self._release(worker, "validated: your work waits in the merge queue")

    def handle_merges(self) -> None:
        """Record finished merges, then start the next one (one at a time, in dependency order)."""
        while not self.merge_results.empty():
            self._record_merge(self.merge_results.get_nowait())
        if self.merging is not None or not self.merge_queue:
            return
        board = self.ledger.board()
        self.merge_queue = [e for e in self.merge_queue if _still_waiting(board.get(e.task), e)]
        if not self.merge_queue:
            return
        waves = {t.id: i for i, t in enumerate(in_wave_order(board.values()))}
        self.merge_queue = order(self.merge_queue, waves)
        entry = self.merging = self.merge_queue.pop(0)
        task = board[entry.task]
        settings = self.git_settings(task)
        scratch = scratch_dir(self.home.root, entry.plan)

        def job() -> None:
            try:
                outcome = merge_entry(entry, scratch=scratch, task_checks=task.validation, gate=settings.gate,
                                      strategy=settings.strategy, include=settings.include,
                                      env=dict(os.environ))
            except Exception as exc:  # noqa: BLE001 - an outcome must come back, or the queue stalls
                outcome = MergeOutcome(entry, False, error=f"{type(exc).__name__}: {exc}")
            self.merge_results.put(outcome)
            self.wake.set()

        self.merges.submit(job)

    def _record_merge(self, outcome: MergeOutcome) -> None:
        entry = outcome.entry
        self.merging = None
        task = self.ledger.board().get(entry.task)
        if not _still_waiting(task, entry):
            return
        assert task is not None
        if outcome.lost_race:
            self.merge_queue.insert(0, entry)  # the branch moved meanwhile: try again from its new tip
            return
        if outcome.error:
            tries = self.merge_errors[entry.task] = self.merge_errors.get(entry.task, 0) + 1
            self.errors.report(f"merge:{outcome.error}", f"merge of {entry.task} failed: {outcome.error}")
            if tries < MERGE_TRIES:
                self.merge_queue.insert(0, entry)  # git hiccuped (a lock left by a killed process): once more
                return
        self.merge_errors.pop(entry.task, None)
        session = self._recorded_session(self.ledger.registry(), entry.worker)
        worker = WorkerState(name=entry.worker, task=entry.task, attempt=entry.attempt, session=session,
                             started_at=self.monotonic())
        try:
            if outcome.landed:
                self._complete(task, worker, None, merge={"branch": entry.branch, "commit": entry.commit,
                                                           "integration": entry.integration, "old": outcome.old,
                                                           "new": outcome.new})
            else:
                self._fail(task, worker, outcome.reason, "stopped: its work did not pass the merge queue")
        except StaleTransition:
            pass
        self.trees.pop(entry.task, None)

    # ----- recovery ---------------------------------------------------------------------------------------
    def recover_git(self) -> set[str]:
        """Rebuild the live attempts' worktrees and the queue from the ledger; the ids of queued tasks (they
        are not adopted as running workers). A queued attempt that git shows landed is finished now."""
        board = self.ledger.board()
        queued: dict[str, QueueEntry] = {}
        for event in self.ledger.events(types=[EventType.WORKTREE_CREATED.value, EventType.MERGE_QUEUED.value]):
            task = board.get(event.task or "")
            if task is None or not task.attempts or task.status not in (TaskStatus.ASSIGNED, TaskStatus.IN_PROGRESS,
                                                                        TaskStatus.VALIDATING):
                continue
            if event.detail.get("attempt") != task.attempts[-1].number:
                continue
            if event.type == EventType.WORKTREE_CREATED:
                tree = AttemptTree.from_detail({**event.detail, "task": task.id})
                if tree is not None:
                    self.trees[task.id] = tree
            elif task.status == TaskStatus.VALIDATING:
                entry = QueueEntry.from_detail({**event.detail, "task": task.id}, seq=event.seq)
                if entry is not None:
                    queued[task.id] = entry
        self.merge_queue = list(queued.values())
        self.wake.set()
        return set(queued)


def _still_waiting(task: Task | None, entry: QueueEntry) -> bool:
    """The entry's attempt is still the task's, still waiting to land (not reopened, retried or cancelled)."""
    return (task is not None and task.status == TaskStatus.VALIDATING and task.assignee == entry.worker
            and bool(task.attempts) and task.attempts[-1].number == entry.attempt)


def new_merge_pool() -> ThreadPoolExecutor:
    """One merge at a time: the queue's whole point."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="merge")

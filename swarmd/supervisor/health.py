"""Watching the workers: a dead pane, a timeout or a stale heartbeat ends the attempt; a lost tmux server
ends them all."""

import logging
from contextlib import suppress

from protocol.agent import AgentStatus, RegistryEntry
from protocol.event import EventType
from protocol.task import LIVE_STATUSES, Task
from swarmd.ledger.log import StaleTransition
from swarmd.supervisor.state import EXIT_STATUS_GRACE, SUPERVISOR, WorkerState
from swarmd.workers.tmux import PaneInfo
from swarmd.workers.wrapper import read_tail

log = logging.getLogger("swarmd.supervisor")


class Health:
    """The part of `Supervisor` that watches panes, timeouts and heartbeats.

    A mixin over the loop's state: it holds no state of its own.
    """

    def check_workers(self) -> None:
        """Dead panes, lost tmux server, stale heartbeats and timeouts, each a failed attempt with its reason."""
        if not self.workers and not self.helpers and not self.finishing:
            return
        panes = self.tmux.panes()
        self.reap_helpers(panes)
        self.reap_finishing(panes)
        if not panes and any(not w.host for w in self.workers.values()) and not self.tmux.is_running():
            self._tmux_lost()
        registry, board = self.ledger.registry(), self.ledger.board()
        now = self.monotonic()
        for worker in list(self.workers.values()):
            task = board.get(worker.task)
            if task is None or task.assignee != worker.name or task.status not in LIVE_STATUSES:
                self._end_worker(worker, AgentStatus.STOPPED)  # taken away (reopened, cancelled): stop it, no failure
                continue
            if worker.reported or worker.name not in self.workers:
                continue
            if worker.host:  # its host reports its pane's end; only its time limit is watched here
                with suppress(StaleTransition):
                    self._check_timeout(task, worker, now)
                continue
            pane = panes.get(worker.session)
            if pane is not None and pane.dead and self._status_pending(worker, pane, now):
                continue
            self.resume_due(worker, now)
            with suppress(StaleTransition):  # settled meanwhile by mail or an operator: the next step sees it
                self._check_worker(task, worker, pane, registry.get(worker.name), now)

    def _check_worker(self, task: Task, worker: WorkerState, pane: PaneInfo | None, entry: RegistryEntry | None,
                      now: float) -> None:
        if pane is None or pane.dead:
            self._pane_ended(task, worker, pane)
        elif worker.paused_since is not None:
            return  # paused at a usage limit: not a failure, and its pause does not count against it
        elif self._check_timeout(task, worker, now):
            return
        elif self._stale(worker, entry, now):
            self._fail(task, worker, f"no heartbeat for over {self.config.stale_after:g} s: the worker seems stuck")

    def _check_timeout(self, task: Task, worker: WorkerState, now: float) -> bool:
        """Fail the attempt if it has run past its time limit (pauses at usage limits left out); True if so."""
        if now - worker.started_at - worker.paused_for <= (limit := task.timeout or self.config.task_timeout):
            return False
        self._fail(task, worker, f"TIMEOUT: no result within {limit:g} s")
        return True

    def _status_pending(self, worker: WorkerState, pane: PaneInfo, now: float) -> bool:
        """tmux may show a pane dead (its pty closed) a moment before it has reaped the exit status."""
        if pane.exit_status is not None or pane.signal is not None or self.spawner.exit_status(worker.name) is not None:
            return False
        worker.dead_since = worker.dead_since or now
        return now - worker.dead_since < EXIT_STATUS_GRACE

    def _pane_ended(self, task: Task, worker: WorkerState, pane: PaneInfo | None) -> None:
        if self.handle_mail():
            return  # its last words may be in the backlog still: judge the pane once that is read
        task = self.ledger.board().get(task.id, task)
        if worker.reported or worker.name not in self.workers or task.assignee != worker.name:
            return
        code = pane.exit_status if pane is not None and pane.exit_status is not None else \
            self.spawner.exit_status(worker.name)
        status = (f"was killed by signal {pane.signal}" if pane is not None and pane.signal is not None
                  else f"exited with status {code}" if code is not None else "ended")
        tail = read_tail(self.spawner.log_path(worker.name), 0)
        reason = f"worker {worker.name} {status} without reporting DONE or FAILED"
        self._fail(task, worker, reason + (f"\nLast output:\n{tail[-800:]}" if tail else ""), why=f"is dead: {status}")

    def _stale(self, worker: WorkerState, entry: RegistryEntry | None, now: float) -> bool:
        """No new heartbeat for stale_after seconds, timed from when this supervisor saw the last one change:
        heartbeats are wall-clock mtimes, and a step of that clock must not make them look old or new."""
        beat = entry.last_heartbeat if entry else None
        if worker.beat_seen_at is None or beat != worker.last_beat:
            worker.last_beat, worker.beat_seen_at = beat, now if beat is not None else worker.started_at
        return now - worker.beat_seen_at > self.config.stale_after

    def _tmux_lost(self) -> None:
        """The whole tmux server went away: every attempt is abandoned, not failed, and starts again."""
        lost = [w for w in self.workers.values() if not w.reported and not w.host]  # a reported DONE is being checked
        for worker in lost:
            self.workers.pop(worker.name)
        self.ledger.append(EventType.CUSTOM, SUPERVISOR, summary=f"tmux server lost: {len(lost)} workers gone; "
                                                                  "their tasks go back to open")
        board = self.ledger.board()
        for worker in lost:
            task = board.get(worker.task)
            if task is not None and task.status in LIVE_STATUSES and task.assignee == worker.name:
                self._abandon(task, "the tmux server was lost")

    # ----- dispatch ---------------------------------------------------------------------------------------

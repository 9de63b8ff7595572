"""Watching the workers: a dead pane, a timeout or a stale heartbeat ends the attempt; a lost tmux server
ends them all."""

import logging
from contextlib import suppress
from dataclasses import dataclass

from protocol.agent import AgentStatus, RegistryEntry
from protocol.event import EventType
from protocol.task import LIVE_STATUSES, Task, TaskStatus
from swarmd.ledger.log import StaleTransition
from swarmd.supervisor.agentstates import PANE_LOOK
from swarmd.supervisor.state import EXIT_STATUS_GRACE, SUPERVISOR, WorkerState
from swarmd.workers.tmux import PaneInfo
from swarmd.workers.wrapper import read_tail

log = logging.getLogger("swarmd.supervisor")


@dataclass(frozen=True)
class PaneLook:
    """What a step knows of the panes: `panes` by session; `complete` when every pane was listed (a session
    missing is then gone), else only the panes found ended by their exit files."""

    panes: dict[str, PaneInfo]
    complete: bool

    def seen(self, session: str) -> bool:
        """Whether this look says anything about `session` (if absent from a complete look: it is gone)."""
        return self.complete or session in self.panes


class Health:
    """The part of `Supervisor` that watches panes, timeouts and heartbeats.

    A mixin over the loop's state: it holds no state of its own.
    """

    def check_workers(self) -> None:
        """Dead panes, lost tmux server, stale heartbeats and timeouts, each a failed attempt with its reason.

        The panes are looked at only when one may have ended (see `look`) or once per `safety_period` (for a
        death nobody reported, or a lost tmux server); heartbeats are read only then, or when one may have gone
        stale.
        """
        if not self.workers and not self.helpers and not self.finishing:
            return
        now = self.monotonic()
        look = self.look(now)
        if look is not None:
            self.reap_helpers(look)
        self.reap_finishing(look)
        if look is not None and look.complete and look.panes == {} and any(not w.host for w in self.workers.values()) \
                and not self.tmux.is_running():
            self._tmux_lost()
            return
        stale_due = any(now >= self._stale_deadline(w) for w in self.workers.values() if self.beats_watched(w))
        registry = self.ledger.agents(self.workers) if look is not None or stale_due else None
        board = self.ledger.board()
        for worker in list(self.workers.values()):
            task = board.get(worker.task)
            if task is None or task.assignee != worker.name or task.status not in LIVE_STATUSES:
                self._end_worker(worker, AgentStatus.STOPPED)  # taken away (reopened, cancelled): stop it, no failure
                continue
            if worker.reported or worker.name not in self.workers:
                continue
            if worker.host:  # its host reports its pane's end; its time limit and heartbeat are watched here
                self.resume_due(worker, now)
                with suppress(StaleTransition):
                    self._check_worker(task, worker, None, False, registry if self.beats_watched(worker) else None,
                                       now)
                continue
            pane = look.panes.get(worker.session) if look is not None else None
            if pane is not None and pane.dead and self._status_pending(worker, pane, now):
                continue
            self.resume_due(worker, now)
            with suppress(StaleTransition):  # settled meanwhile by mail or an operator: the next step sees it
                self._check_worker(task, worker, pane, look is not None and look.seen(worker.session), registry,
                                   now)

    def look(self, now: float) -> "PaneLook | None":
        """What this step knows of the panes; None when it need not look. All of them are listed (one tmux call)
        when tmux's pane-died hook fired, a dead pane awaits its status, or the safety period is up. When only a
        pane's first process said it ended, the exit files say which workers' panes did, if they all exited 0
        (one that failed may have been hung up with the whole server: a listing tells)."""
        listing = self.pane_hook_event.is_set() or self.recheck_panes \
            or now >= self.panes_seen_at + self.safety_period()
        if not listing and not self.pane_event.is_set():
            return None
        self.pane_event.clear()  # before looking: an end while we look is looked at next time
        ended = {} if listing else self._exited()
        if ended and all(pane.exit_status == 0 for pane in ended.values()):
            return PaneLook(ended, complete=False)
        self.pane_hook_event.clear()
        return PaneLook(self._list_panes(now), complete=True)

    def _exited(self) -> dict[str, PaneInfo]:
        """The panes of this machine's workers (released ones and helpers too) whose exit file is written: ended,
        with the status their first process recorded."""
        ended = {}
        for name, session in [*((w.name, w.session) for w in self.workers.values() if not w.host),
                              *((n, s) for n, (s, _) in self.finishing.items()),
                              *((h, self.spawner.session_name(h)) for h in self.helpers)]:
            if (code := self.spawner.exit_status(name)) is not None:
                ended[session] = PaneInfo(session=session, pane_id="", pid=0, dead=True, exit_status=code,
                                          started=None, command="")
        return ended

    def _list_panes(self, now: float) -> dict[str, PaneInfo]:
        self.panes_seen_at, self.recheck_panes = now, False
        return self.tmux.panes()

    def safety_period(self) -> float:
        """Seconds between looks at the panes when no event says one died (tmux 3.3 now and then misses a pane's
        death; a killed tmux server reports none): a heartbeat interval, never less than a tick."""
        return max(self.config.tick, self.config.heartbeat_interval)

    def next_due(self) -> float:
        """The monotonic time by which the loop must run a step even if nothing wakes it: the next look at the
        panes, the earliest timeout, stale heartbeat, end of a pause or of a released worker's grace, an
        interactive agent's next pane look, and a tick while something is watched by polling (a dead pane's
        status, prompts queued for an idle agent)."""
        now = self.monotonic()
        due = [self.panes_seen_at + self.safety_period()] if self.workers or self.helpers or self.finishing else []
        if self.recheck_panes or self.queued_workers():
            due.append(now + self.config.tick)
        due.extend(self.hosts_due())
        board = self.ledger.board() if self.workers else {}
        for worker in self.workers.values():
            if worker.reported:
                continue
            if self.interactive(worker.name):
                due.append(worker.looked_at + PANE_LOOK)  # the pane fallback's look (AgentStates.watch_panes)
            if worker.paused_since is not None:
                due.append(worker.resume_at if worker.resume_at is not None else now + self.config.tick)
                continue
            task = board.get(worker.task)
            limit = (task.timeout if task else None) or self.config.task_timeout
            due.append(worker.started_at + worker.paused_for + limit)
            if self.beats_watched(worker):  # a remote one's while its host is up (RemoteWorkers)
                due.append(self._stale_deadline(worker))
        due += [deadline for _, deadline in self.finishing.values()]
        return min(due, default=now + self.safety_period())

    def _stale_deadline(self, worker: WorkerState) -> float:
        """When `worker` goes stale unless a new heartbeat is seen (monotonic seconds)."""
        seen = worker.beat_seen_at if worker.beat_seen_at is not None else worker.started_at
        return seen + self.config.stale_after + self.beat_lag(worker)

    def _check_worker(self, task: Task, worker: WorkerState, pane: PaneInfo | None, listed: bool,
                      registry: dict[str, RegistryEntry] | None, now: float) -> None:
        """`pane` as listed now (None: its session is gone), when `listed`; `registry` None when the heartbeats
        were not read (none can be stale yet)."""
        if listed and (pane is None or pane.dead):
            self._pane_ended(task, worker, pane)
        elif worker.paused_since is not None:
            return  # paused at a usage limit: not a failure, and its pause does not count against it
        elif self._check_timeout(task, worker, now):
            return
        elif registry is not None and self._stale(worker, registry.get(worker.name), now):
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
        self.recheck_panes = True  # look again at the next tick
        return now - worker.dead_since < EXIT_STATUS_GRACE

    def _pane_ended(self, task: Task, worker: WorkerState, pane: PaneInfo | None) -> None:
        if self.mail_down or self.handle_mail():
            return  # its last words may be in the backlog (or on a mail server down) still: judge it once read
        task = self.ledger.board().get(task.id, task)
        if worker.reported or worker.name not in self.workers or task.assignee != worker.name:
            return
        if worker.adopted and task.status == TaskStatus.ASSIGNED and self.spawner.exit_status(worker.name) is None:
            # Taken over from a supervisor that died, never ACCEPTED, no exit recorded: its pane went before its
            # worker started (a pane of the pool renamed for it by a supervisor that died before ordering it
            # removes itself). Not the worker's failure.
            self.workers.pop(worker.name, None)
            self._abandon(task, f"the pane of {worker.name} ended before its worker started")
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
        return now - worker.beat_seen_at > self.config.stale_after + self.beat_lag(worker)

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

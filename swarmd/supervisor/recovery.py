"""A restarted supervisor rebuilds itself from the ledger: it adopts the worker sessions still alive,
reopens the tasks whose workers are gone and kills sessions nobody owns."""

import logging
import os
import socket

from protocol.agent import AgentStatus, RegistryEntry
from protocol.event import EventType
from protocol.task import LIVE_STATUSES, Task, TaskStatus
from swarmd.hosts.settings import hosts_link
from swarmd.supervisor.settings import clear_settings
from swarmd.supervisor.state import SUPERVISOR, WorkerState
from swarmd.workers.tmux import PaneInfo

log = logging.getLogger("swarmd.supervisor")


class Recovery:
    """The part of `Supervisor` that rebuilds it after a restart.

    A mixin over the loop's state: it holds no state of its own.
    """

    def recover(self) -> None:
        """Rebuild the workers from the ledger, adopt live sessions, reopen tasks whose worker is gone."""
        clear_settings(self.home)  # a `swarm run --max-workers` override lasts as long as the supervisor it was for
        board, registry = self.ledger.board(), self.ledger.registry()
        # A name may be on an attempt and not in the registry (killed between the two writes): never reuse it.
        used = set(registry) | {a.worker for t in board.values() for a in t.attempts if a.worker}
        self._next_worker = 1 + max((_worker_number(n) for n in used), default=0)
        if SUPERVISOR not in registry:
            self.ledger.register_agent(RegistryEntry(name=SUPERVISOR, role="supervisor", status=AgentStatus.BUSY,
                                                     pid=os.getpid(), host=socket.gethostname()), SUPERVISOR)
        else:
            self.ledger.update_agent(SUPERVISOR, SUPERVISOR, status=AgentStatus.BUSY, pid=os.getpid())
        panes = self.tmux.panes()
        adopted, reopened = [], []
        queued = self.recover_git()
        for task in board.values():
            if task.status not in LIVE_STATUSES or task.id in queued or task.coordinated():
                continue
            session = self._recorded_session(registry, task.assignee or "")
            host = self._remote_host(registry, task.assignee or "")
            if host and task.attempts:  # its host says whether it still runs (a host down: abandoned then)
                self._adopt(task, session, registry.get(task.assignee or ""), host)
                adopted.append(task.id)
            elif task.assignee and task.attempts and (session in panes or task.status == TaskStatus.VALIDATING):
                self._adopt(task, session, registry.get(task.assignee))
                adopted.append(task.id)
            else:
                self._abandon(task, "its worker is gone (the supervisor was down)")
                reopened.append(task.id)
        self.helpers = {e.name: e.task or "" for e in registry.values() if e.role == "helper" and e.session in panes
                        and not panes[e.session].dead}
        killed = self._kill_orphans(panes, registry)
        if adopted or reopened or killed:
            self.ledger.append(EventType.SUPERVISOR_RECOVERED, SUPERVISOR, pid=os.getpid(), adopted=adopted,
                               reopened=reopened, killed=killed,
                               summary=f"supervisor recovered: adopted {len(adopted)}, reopened {len(reopened)}, "
                                       f"killed {len(killed)} orphan sessions")
        else:
            self.ledger.append(EventType.SUPERVISOR_STARTED, SUPERVISOR, pid=os.getpid(),
                               summary=f"supervisor started (pid {os.getpid()}, max {self.max_workers} workers)")

    def _adopt(self, task: Task, session: str, entry: RegistryEntry | None, host: str = "") -> None:
        attempt = task.attempts[-1]
        ran_for = max(0.0, (self.clock() - attempt.started).total_seconds())  # as well as the wall clock can say
        state = WorkerState(name=task.assignee or "", task=task.id, attempt=attempt.number, session=session,
                            started_at=self.monotonic() - ran_for, reported=task.status == TaskStatus.VALIDATING,
                            host=host, start=_remote_start(entry) if host else "", adopted=True)
        self.workers[state.name] = state
        if entry is not None and not state.reported:
            self.resume_paused(state, entry.metadata)  # a usage-limit pause goes on to its reset time
        if task.status == TaskStatus.VALIDATING:
            self._validate(task, state)  # the DONE was taken before the crash; its check result was not

    def _remote_host(self, registry: dict[str, RegistryEntry], agent: str) -> str:
        """The worker host `agent` was started on, while swarm.toml still names the hosts' server; "" for this
        machine (or when there are no hosts any more: then its attempt is abandoned like any lost one)."""
        entry = registry.get(agent)
        host = entry.metadata.get("remote_host", "") if entry is not None else ""
        return host if isinstance(host, str) and hosts_link(self.config, self.home.root) else ""

    def _recorded_session(self, registry: dict[str, RegistryEntry], agent: str) -> str:
        """The session recorded for `agent` when it was started; today's name for it if none was recorded
        (a change of `name` in swarm.toml must not lose track of the workers started before it)."""
        entry = registry.get(agent)
        return entry.session if entry is not None and entry.session else self.spawner.session_name(agent)

    def _kill_orphans(self, panes: dict[str, PaneInfo], registry: dict[str, RegistryEntry]) -> list[str]:
        """Live sessions of ours (recorded for an agent, or named with today's prefix) that no task is assigned
        to must not go on working."""
        ours = {w.session for w in self.workers.values()} | {self._recorded_session(registry, h) for h in self.helpers}
        crew = {e.session for e in registry.values() if e.metadata.get("crew")}  # a coordinator's: not ours
        recorded = {e.session for e in registry.values() if e.session and e.role != "supervisor"} - crew
        prefix = f"{self.config.name}-"
        orphans = [s for s, p in panes.items()
                   if (s in recorded or s.startswith(prefix)) and s not in ours | crew and not p.dead]
        for session in orphans:
            self.tmux.kill_session(session)
        return orphans

    # ----- mail -------------------------------------------------------------------------------------------


def _remote_start(entry: RegistryEntry | None) -> str:
    """The start order id recorded for a remote worker ("" when none was: its host's events are then not
    checked against one)."""
    start = entry.metadata.get("remote_start", "") if entry is not None else ""
    return start if isinstance(start, str) else ""


def _worker_number(name: str) -> int:
    digits = name[1:]
    return int(digits) if name[:1] in ("w", "h") and digits.isdigit() else 0

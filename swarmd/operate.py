"""What an operator does to a running swarm: look at it, steer a worker, kill one, tear sessions down."""

import os
import threading
from collections.abc import Iterator
from contextlib import closing, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from agentmail import PostOffice
from protocol.agent import AgentStatus, RegistryEntry
from protocol.event import Event, EventType
from protocol.ids import utcnow
from protocol.messages import Message, MessageType, make_message
from protocol.names import validate_agent_name
from protocol.task import LIVE_STATUSES, AttemptOutcome, TaskStatus
from swarmd.supervisor import retention, settings
from swarmd.config import load_config
from swarmd.supervisor.daemon import running_pid
from swarmd.errors import SwarmError, WorkerEnded
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.ledger.questions import Question, record_answer, unanswered
from swarmd.ledger.waiting import waiting_on
from swarmd.workers.dialogs import answer_dialog
from swarmd.workers.promptqueue import PromptQueue
from swarmd.workers.spawner import Spawner
from swarmd.workers.tmux import TmuxServer
from swarmd.workers.warmpanes import WARM_MARK

if TYPE_CHECKING:
    from swarmd.hosts.attach import AttachPlan
    from swarmd.hosts.relay import Relay

OPERATOR = "operator"
RECENT_EVENTS = 5000  # how far back `status` looks for each worker's last message and open question
ENDED = (AgentStatus.STOPPED, AgentStatus.DEAD)
_ENDED_SAFETY_WAIT = 2.0  # seconds; a pane's death or a ledger write wakes `when_ended` at once


@dataclass
class WorkerView:
    name: str
    role: str
    task: str | None
    state: str
    session: str | None
    pane: str  # alive | exited N | gone
    heartbeat_age: float | None
    last_message_age: float | None
    question: str | None = None  # a HELP_REQUEST it is waiting on an answer to (`swarm reply` answers it)
    asked_age: float | None = None
    queued: list[str] = field(default_factory=list)  # prompts waiting for its agent to be idle, oldest first
    queue_note: str | None = None  # why they still wait: held by a person's unsent text, a failed delivery
    agent_state: str | None = None  # what its agent's hooks last said: starting, working, idle, needs_input, ...
    agent_detail: str = ""  # the dialog's text (needs_input), the limit's message (rate_limited)
    paused_until: str | None = None  # ISO UTC: paused at a usage limit until then, when it is told to continue


class Operator:
    """The operator's library API over one home; `actor` is who acts (the feed's `agent` on every event an
    action writes, the sender of its mail): `operator` from the CLI, the signed-in person from the web page."""

    def __init__(self, home: SwarmHome, actor: str = OPERATOR) -> None:
        if not home.exists():
            raise SwarmError(f"no swarm home at {home.root}: run `swarm init` first")
        self.home = home
        self.actor = validate_agent_name(actor)
        self.config = load_config(home.config_file)
        self.ledger = Ledger(home, durable=self.config.durable, stale_after=self.config.stale_after)
        self.tmux = TmuxServer(home.tmux_socket)

    def session(self, worker: str) -> str:
        """The tmux session recorded for `worker` when it was started (never one rebuilt from today's swarm.toml,
        whose `name` may have changed since); the name it would get today if none was recorded."""
        entry = self.ledger.registry().get(validate_agent_name(worker))
        return entry.session if entry is not None and entry.session else f"{self.config.name}-{worker}"

    def entry(self, worker: str) -> RegistryEntry:
        entry = self.ledger.registry().get(validate_agent_name(worker))
        if entry is None:
            raise SwarmError(f"no worker named {worker!r}: see `swarm status`")
        return entry

    # ----- looking --------------------------------------------------------------------------------------
    def status(self, now: datetime | None = None) -> dict:
        now = now or utcnow()
        board, registry = self.ledger.board(), self.ledger.registry()
        panes = self.tmux.panes()
        recent = self.ledger.events(since_seq=max(0, self.ledger.last_seq() - RECENT_EVENTS))
        last_seen, questions = _last_messages(recent), unanswered(recent)
        workers = []
        for entry in registry.values():
            pane = panes.get(entry.session or "")
            if entry.role == "supervisor" or (entry.status in ENDED and pane is None):
                continue
            asked = _waiting_on(entry, questions.get(entry.name))
            queue = PromptQueue(self.home.run_dir, entry.name)
            workers.append(WorkerView(
                name=entry.name, role=entry.role, task=entry.task, state=entry.status, session=entry.session,
                pane=(f"on host {remote_host(entry)}" if remote_host(entry) else "gone") if pane is None
                else (f"exited {pane.exit_status}" if pane.dead else "alive"),
                heartbeat_age=_age(now, entry.last_heartbeat), last_message_age=_age(now, last_seen.get(entry.name)),
                question=asked.text if asked else None, asked_age=_age(now, asked.asked) if asked else None,
                queued=[item.text for item in queue.items()], queue_note=queue.note(),
                agent_state=entry.metadata.get("agent_state"), agent_detail=entry.metadata.get("state_detail") or "",
                paused_until=entry.metadata.get("paused_until"),
            ))
        by_status: dict[str, int] = {}
        waiting = []
        for task in board.values():
            by_status[task.status] = by_status.get(task.status, 0) + 1
            if note := waiting_on(task.status, ((n.author, n.kind.value, n.text) for n in task.notes)):
                waiting.append({"task": task.id, "note": note})
        pid = running_pid(self.home)
        return {"home": str(self.home.root), "supervisor": {"running": pid is not None, "pid": pid},
                "dispatch": {"paused": settings.dispatch_paused(self.home)}, "workers": workers, "tasks": by_status,
                "waiting": waiting}

    # ----- acting ---------------------------------------------------------------------------------------
    def live_entry(self, worker: str, doing: str) -> RegistryEntry:
        """The worker's entry; WorkerEnded if it has stopped or died (and its pane is not running)."""
        entry = self.entry(worker)
        if entry.status in ENDED:
            pane = self.tmux.pane(self.session(entry.name))
            if pane is None or pane.dead:
                raise WorkerEnded(f"{entry.name} has ended ({entry.status}): nothing to {doing}; "
                                  f"see `swarm logs {entry.name}`")
        return entry

    def steer(self, worker: str, text: str, nudge: bool = False) -> str:
        """STEER mail to the worker; with `nudge`, also type the text into its pane (literally, then Enter).
        An interactive worker's agent reads no mail and is never typed into while busy: the text is queued
        instead (`swarm status` shows the queue) and the supervisor delivers it once the agent is idle; the
        return value is then "queued". Raises WorkerEnded for a worker that has ended."""
        entry = self.live_entry(worker, "steer")
        if host := remote_host(entry):
            message = make_message(MessageType.STEER, self.actor, entry.name, {"text": text, "task": entry.task},
                                   thread=entry.task)
            self.mail_remote(host, entry, message)
            self.ledger.append(EventType.CUSTOM, self.actor, entry.task,
                               summary=f"steered {entry.name} on host {host}: {text}"[:300])
            return message.id
        if self.interactive(entry):
            PromptQueue(self.home.run_dir, entry.name).push(text, kind="steer", sender=OPERATOR)
            self.ledger.append(EventType.CUSTOM, OPERATOR, entry.task,
                               summary=f"steer queued for {entry.name}: {text}"[:300])
            return "queued"
        message = PostOffice(self.home.root).send(
            make_message(MessageType.STEER, self.actor, entry.name, {"text": text, "task": entry.task},
                         thread=entry.task))
        if nudge:
            self.tmux.send_keys(self.session(entry.name), text)
        self.ledger.append(EventType.CUSTOM, self.actor, entry.task, summary=f"steered {entry.name}: {text}"[:300])
        return message.id

    def interactive(self, entry: RegistryEntry) -> bool:
        """Whether the worker runs its agent interactively: its task's profile has `mode = "interactive"`."""
        task = self.ledger.board().get(entry.task) if entry.task else None
        profile = self.config.profiles.get(task.profile or self.config.default_profile) if task else None
        return profile is not None and profile.mode == "interactive"

    def answer(self, worker: str, choice: str, *, destructive: bool = False) -> str:
        """Pick the option labelled `choice` in the dialog the worker's agent shows; return the label picked.
        The answer goes in the feed (it answers the dialog's `question`). A dialog that would confirm something
        destructive is answered only with `destructive`. Raises
        SwarmError when no dialog shows, `choice` names no single option, or the pick did not take."""
        entry = self.live_entry(worker, "answer")
        label = answer_dialog(self.tmux, self.session(entry.name), choice, destructive=destructive)
        record_answer(self.ledger, self.actor, entry.name, entry.task, f"picked {label!r} in its dialog", "")
        return label

    def reply(self, worker: str, text: str) -> str:
        """Answer a worker's HELP_REQUEST (HELP_RESPONSE mail); the answer goes in the feed too. For an
        interactive worker it is also queued, to be delivered into its pane once its agent is idle."""
        entry = self.entry(worker)
        if not entry.task:
            raise SwarmError(f"{entry.name} has no task to answer about")
        message = make_message(MessageType.HELP_RESPONSE, self.actor, entry.name, {"task": entry.task, "answer": text},
                               thread=entry.task)
        if host := remote_host(entry):  # its host delivers it (and types it in for an interactive agent)
            self.mail_remote(host, entry, message)
        else:
            if self.interactive(entry):
                PromptQueue(self.home.run_dir, entry.name).push(text, kind="reply", sender=OPERATOR)
            PostOffice(self.home.root).send(message)
        record_answer(self.ledger, self.actor, entry.name, entry.task, text, message.id)
        return message.id

    def kill(self, worker: str, hold: bool = False) -> str | None:
        """End a worker's session; its task goes back to open without spending an attempt, or with `hold` to
        blocked (held: it waits for `swarm retry`). Returns the task. Raises WorkerEnded for a worker that has
        ended."""
        entry = self.live_entry(worker, "kill")
        task = self.ledger.board().get(entry.task or "")
        if task is not None and task.status in LIVE_STATUSES and task.assignee == entry.name:
            status, outcome = (TaskStatus.BLOCKED, "held until `swarm retry`") if hold else (TaskStatus.OPEN,
                                                                                            "back to open")
            self.ledger.transition(task.id, status, self.actor, EventType.TASK_FAILED, expect_assignee=entry.name,
                                   summary=f"{task.id} {outcome}: {entry.name} killed by the operator",
                                   worker=entry.name, reason="killed by the operator", held=hold,
                                   outcome=AttemptOutcome.ABANDONED.value)
        else:
            task = None
        if host := remote_host(entry):
            self.stop_remote(host, entry, "killed by the operator")
        else:
            self.tmux.kill_session(self.session(entry.name))
        self.ledger.update_agent(entry.name, self.actor, status=AgentStatus.STOPPED)
        return task.id if task else None

    def mail_remote(self, host: str, entry: RegistryEntry, message: Message) -> None:
        """Send `message` to the worker on its host (through the host's work queue)."""
        with closing(self.relay()) as relay:
            relay.mail(host, entry.name, self.attempt_of(entry), message)

    def stop_remote(self, host: str, entry: RegistryEntry, reason: str) -> None:
        """Tell the worker's host to end it (through the host's work queue)."""
        with closing(self.relay()) as relay:
            relay.stop(host, entry.name, self.attempt_of(entry), reason)

    def relay(self) -> "Relay":
        """A link to the swarm's hosts (HostError when there are none or they cannot be reached)."""
        from swarmd.hosts.relay import Relay

        return Relay(self.home, self.config)

    def attempt_of(self, entry: RegistryEntry) -> int:
        """The number of the attempt the worker made (its fencing token on its host); 0 if none is recorded."""
        task = self.ledger.board().get(entry.task or "")
        return next((a.number for a in reversed(task.attempts) if a.worker == entry.name), 0) if task else 0

    def remote_logs(self, worker: str, follow: bool = False) -> Iterator[str] | None:
        """The log of a worker that runs on a host, read from there (None for a worker of this machine)."""
        entry = self.entry(worker)
        host = remote_host(entry)
        if not host:
            return None
        relay = self.relay()

        def chunks() -> Iterator[str]:
            try:
                yield from relay.logs(host, entry.name, follow=follow)
            finally:
                relay.close()

        return chunks()

    def retry(self, task_ids: list[str]) -> list[str]:
        """Give blocked or failed tasks a fresh budget of attempts, all or none (see `Ledger.retry`); their ids."""
        return [e.task or "" for e in self.ledger.retry(task_ids, self.actor)]

    def pause(self) -> bool:
        """Stop dispatch: the supervisor starts no new attempt (running ones go on) until `resume`; it lasts
        across supervisor restarts. False if it was paused already."""
        if not settings.pause_dispatch(self.home, self.actor):
            return False
        self.ledger.append(EventType.CUSTOM, self.actor, summary=f"dispatch paused by {self.actor}", dispatch="paused")
        return True

    def resume(self) -> bool:
        """Let dispatch go on after `pause`; False if it was not paused."""
        if not settings.resume_dispatch(self.home):
            return False
        self.ledger.append(EventType.CUSTOM, self.actor, summary=f"dispatch resumed by {self.actor}",
                           dispatch="resumed")
        return True

    def teardown(self, keep_failed: bool = False) -> list[str]:
        """End every worker session the swarm started, with or without a running supervisor; tasks of live
        ones reopen. Sessions are found by the names recorded when they were started, and by today's name
        prefix; on the swarm's own tmux server, so never a pane of another server (the one this command may
        run in is skipped only when `$TMUX` names the swarm's own socket). Returns the workers' sessions ended
        (the pane pool's waiting panes end too, unlisted)."""
        recorded = {e.session: e.name for e in self.ledger.registry().values() if e.session and e.role != "supervisor"}
        prefix = f"{self.config.name}-"
        own = self._own_pane()
        ended = []
        for session, pane in self.tmux.panes().items():
            if (session not in recorded and not session.startswith(prefix)) or pane.pane_id == own:
                continue
            if keep_failed and pane.dead and pane.exit_status != 0:
                continue
            if session in recorded:
                with suppress(WorkerEnded):  # an ended worker has no task to reopen: only its session goes
                    self.kill(recorded[session])
            self.tmux.kill_session(session)
            if not session.startswith(prefix + WARM_MARK):  # a pane waiting for a worker: killed, not listed
                ended.append(session)
        return ended

    def clean(self, *, older_than_days: float | None = None, dry_run: bool = False,
              now: datetime | None = None) -> retention.Report:
        """Remove what ended workers left: their dead panes' sessions, prompts and exit files (any age), logs
        older than `older_than_days` (default: keep_logs_days), and whatever the retention settings say
        (see `swarmd.supervisor.retention`). A live worker's session and files are never touched."""
        now = now or utcnow()
        prefix = f"{self.config.name}-"
        recorded = {e.session: e.name for e in self.ledger.registry().values() if e.session and e.role != "supervisor"}
        panes = {s: p for s, p in self.tmux.panes().items() if s in recorded or s.startswith(prefix)}
        worker_of = {s: recorded.get(s, s[len(prefix):]) for s in panes}
        live = retention.live_agents(self.ledger) | {worker_of[s] for s, p in panes.items() if not p.dead}
        sessions = [retention.Removal("session", s, 0, f"{worker_of[s]} has ended") for s, p in sorted(panes.items())
                    if p.dead and worker_of[s] not in live]
        leftovers = [r for r in retention.ended_worker_files(self.home, live, now.timestamp(), 0.0)
                     if r.kind in ("prompt", "exit")]
        config = retention.with_log_age(self.config, older_than_days)
        removals = sessions + leftovers + [r for r in retention.plan(self.home, config, live, now)
                                           if r.kind not in ("prompt", "exit")]
        if dry_run:
            return retention.Report(True, removals)
        for removal in sessions:
            self.tmux.kill_session(removal.path)
        return retention.Report(False, retention.apply(removals))

    def _own_pane(self) -> str | None:
        """The pane this command runs in, if it is one of the swarm's (pane ids are only unique per server)."""
        tmux, pane = os.environ.get("TMUX", ""), os.environ.get("TMUX_PANE")
        socket = tmux.rsplit(",", 2)[0] if tmux.count(",") >= 2 else ""
        if not pane or not socket:
            return None
        try:
            return pane if os.path.samefile(socket, self.home.tmux_socket) else None
        except OSError:
            return None

    def attach_plan(self, worker: str, relay: bool = False) -> "AttachPlan":
        """How `swarm attach` reaches the worker: its tmux session on this machine, or on its host by ssh (when
        the host gave an ssh destination and `relay` is not asked for) or through the host agent's terminal relay
        (`swarmd.hosts.attach`). Raises SwarmError for a worker with no session, HostError for a host down."""
        from swarmd.hosts.attach import AttachPlan, remote_plan

        entry = self.entry(worker)
        session = self.session(entry.name)
        if host := remote_host(entry):
            return remote_plan(self.home, self.config, host, entry.name, session, entry.metadata.get("remote_tmux"),
                               relay=relay)
        if self.tmux.pane(session) is None:
            raise SwarmError(f"worker {worker} has no tmux session (it has ended): see `swarm logs {worker}`")
        return AttachPlan(entry.name, "tmux", self.tmux.attach_argv(session), session=session)

    def running(self, worker: str) -> bool:
        """Whether the worker's pane is still running (its session exists and its command has not ended)."""
        pane = self.tmux.pane(self.session(worker))
        return pane is not None and not pane.dead

    def when_ended(self, worker: str) -> threading.Event:
        """An event set once the worker's pane has ended or its session is gone (at once if it already has).
        Pane deaths and ledger writes wake the check; a slow timer covers a whole tmux server killed."""
        ended = threading.Event()
        if not self.running(worker):
            ended.set()
            return ended
        from swarmd.watch import watch_file  # watchdog: only a waiter needs it, not `swarm status`

        wake = threading.Event()
        watches = [watch_file(Spawner(self.home, self.config, self.tmux).pane_died_file, wake.set),
                   watch_file(self.ledger.path, wake.set)]

        def check() -> None:
            try:
                while self.running(worker):
                    wake.wait(_ENDED_SAFETY_WAIT)
                    wake.clear()
            finally:
                for watch in watches:
                    watch.stop()
                ended.set()

        threading.Thread(target=check, name=f"ended-{worker}", daemon=True).start()
        return ended

    def log_path(self, worker: str) -> Path:
        path = self.home.logs_dir / f"{validate_agent_name(worker)}.log"
        if not path.exists():
            raise SwarmError(f"no log for {worker!r} in {self.home.logs_dir}")
        return path


def remote_host(entry: RegistryEntry) -> str:
    """The worker host the agent runs on; "" for this machine."""
    host = entry.metadata.get("remote_host")
    return host if isinstance(host, str) else ""


def _last_messages(events: list[Event]) -> dict[str, datetime]:
    """When each agent was last heard of in `events`: its own events, and the supervisor's about its mail."""
    seen: dict[str, datetime] = {}
    for event in events:
        seen[event.agent] = event.ts
        if worker := event.detail.get("worker"):
            if event.type in (EventType.TASK_STARTED, EventType.TASK_VALIDATING, EventType.TASK_CHECKPOINT):
                seen[worker] = event.ts
    return seen


def _waiting_on(entry: RegistryEntry, question: Question | None) -> Question | None:
    """The question a live worker asked about its current task, if it is still unanswered."""
    if question is None or entry.status in ENDED or question.task != entry.task:
        return None
    return question


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else max(0.0, (now - then).total_seconds())

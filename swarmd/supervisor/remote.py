"""Workers on other machines: attempts placed on worker hosts, their reports taken from the hosts' events, and
hosts that go down.

A remote worker's own heartbeat comes in its host's beat (`swarmd.hosts.liveness`): one that goes stale while its
host is up is a stuck worker, as on this machine. A host's events carry the attempt number they speak for; what does not speak for a worker's current attempt
(a host given up on that comes back, say) is refused and its worker told to stop. A host whose heartbeat key
has expired is down once a grace has passed after that (`swarmd.hosts.lease.supervisor_grace`: the key is the
host's lease, and the host has ended its workers by then): its attempts are abandoned (no attempt spent) and
their tasks run elsewhere. A host that reports a worker ended by its lapsed lease has that attempt abandoned too.
"""

import json
import logging

from protocol.event import EventType
from protocol.ids import new_id
from protocol.messages import Message, MessageType, make_message
from protocol.task import LIVE_STATUSES, Task
from swarmd.errors import SwarmError
from swarmd.hosts.client import POLL, HostsClient
from swarmd.hosts.lease import supervisor_grace
from swarmd.hosts.settings import hosts_link
from swarmd.hosts.wire import HostBeat, HostEvent, MailOrder, StartOrder, StopOrder
from swarmd.ledger.log import StaleTransition
from swarmd.supervisor.state import SUPERVISOR, WorkerState

log = logging.getLogger("swarmd.supervisor")

LOCAL = ""  # the supervisor's own machine, where a task may be placed too


class RemoteWorkers:
    """The part of `Supervisor` that places attempts on hosts and follows them there.

    A mixin over the loop's state; its own: `remote` (the hosts' client, None without `[hosts] url`),
    `hosts_down` (hosts said to be down, until they beat again), `hosts_missing` (host -> monotonic seconds when
    its key was first seen gone, while within the grace) and `stops_sent` (workers told to stop).
    """

    def start_hosts(self) -> None:
        """Connect to the hosts' NATS server if swarm.toml names one (in the background)."""
        link = hosts_link(self.config, self.home.root)
        if link is not None and self.remote is None:
            self.remote = HostsClient(link, ttl=self.config.hosts.ttl, swarm=self.config.name,
                                      wake=self.wake.set).start()

    def stop_hosts(self) -> None:
        if self.remote is not None:
            self.remote.close()

    def restart_hosts(self) -> None:
        """`[hosts]` changed in swarm.toml: drop the link and make one with the new settings (none without a
        url). Workers already on hosts go on; on the same server they are followed as before."""
        self.stop_hosts()
        self.remote = None
        self.start_hosts()
        where = self.config.hosts.url or "no hosts"
        self.ledger.append(EventType.CUSTOM, SUPERVISOR, summary=f"[hosts] changed: worker hosts now at {where}")

    # ----- placement -----------------------------------------------------------------------------------
    def free_slots(self, local_free: int) -> dict[str, tuple[int, list[str]]]:
        """Where an attempt may start now: place -> (free slots, labels offered); `LOCAL` is this machine."""
        places = {LOCAL: (local_free, self.config.hosts.labels)} if self.config.hosts.local_workers else {}
        if self.remote is None:
            return places
        for name, beat in self.remote.snapshot().beats.items():
            if name in self.hosts_down:
                continue
            busy = {w.name for w in self.workers.values() if w.host == name} | set(beat.workers)
            places[name] = (beat.slots - len(busy), beat.labels)
        return places

    @staticmethod
    def place(task: Task, places: dict[str, tuple[int, list[str]]]) -> str | None:
        """The place with the most free slots among those that offer every label the task asks for (this
        machine first among equals); None when none has a free slot."""
        fits = [(-free, name) for name, (free, labels) in places.items() if free > 0 and set(task.labels) <= set(labels)]
        return min(fits)[1] if fits else None

    # ----- starting and stopping remote attempts ---------------------------------------------------------
    def start_remote(self, task: Task, state: WorkerState) -> None:
        """Order the attempt's host to start its worker (queued: the host takes it when it can)."""
        assert self.remote is not None and state.host
        profile = self.spawner.profile(task.profile)
        try:
            tree, bundle = self.remote_tree(task, state) or (None, None)
        except SwarmError as exc:
            self._launch_failed(self.ledger.task(task.id), state, str(exc))
            return
        self.send_start(state.host, StartOrder(
            id=state.start or f"start.{state.name}.{new_id()}", worker=state.name, attempt=state.attempt,
            max_attempts=self.max_attempts(task),
            task=task.model_dump(mode="json"), profile=profile.model_dump(mode="json"),
            heartbeat_interval=self.config.heartbeat_interval, durable=self.config.durable, git=tree), bundle)

    def stop_remote(self, host: str, worker: str, attempt: int, reason: str, *, grace: float = 0.0) -> None:
        """Tell `host` to end `worker` (once per worker: the order waits in the host's queue until it takes it)."""
        if self.remote is None or worker in self.stops_sent:
            return
        self.stops_sent.add(worker)
        self.remote.send(host, StopOrder(id=f"stop.{worker}.{new_id()}", worker=worker, attempt=attempt,
                                         reason=reason, grace=grace, home_tip=self.home_tip(worker, attempt)))

    def prompt_remote(self, worker: WorkerState, text: str) -> None:
        """Have `worker`'s host type `text` into its interactive agent's pane once it is idle (a STEER from the
        supervisor, which the host queues as a prompt)."""
        if self.remote is None or not worker.host:
            return
        message = make_message(MessageType.STEER, SUPERVISOR, worker.name, {"text": text, "task": worker.task},
                               thread=worker.task)
        self.remote.send(worker.host, MailOrder(id=f"mail.{message.id}", worker=worker.name, attempt=worker.attempt,
                                                message=json.loads(message.to_json())))

    # ----- following the hosts ----------------------------------------------------------------------------
    def handle_hosts(self) -> None:
        """Hosts gone down or come back, then what the hosts reported, in the order they reported it."""
        if self.remote is None:
            return
        snapshot = self.remote.snapshot()
        for name in sorted(self.hosts_down & set(snapshot.beats)):
            self.hosts_down.discard(name)
            self.ledger.append(EventType.CUSTOM, SUPERVISOR, summary=f"host {name} is up again", host=name)
        missing = {w.host for w in self.workers.values() if w.host} - set(snapshot.beats) if snapshot.settled else set()
        self.hosts_missing = {name: self.hosts_missing.get(name, self.monotonic()) for name in missing}
        for name, since in sorted(self.hosts_missing.items()):
            if self.monotonic() >= since + supervisor_grace(self.config.hosts.ttl):
                self.host_down(name)
        for name, beat in snapshot.beats.items():
            for worker, attempt in beat.workers.items():
                if not self._speaks_for(name, worker, attempt):
                    self.stop_remote(name, worker, attempt, "this attempt was given up on: another runs the task")
        self.take_worker_beats(snapshot.beats)
        for event, msg in self.remote.take_events():
            try:
                self.on_host_event(event)
            except StaleTransition:
                pass  # settled meanwhile: the event changes nothing
            self.remote.ack(msg)

    # ----- remote workers' own heartbeats (swarmd.hosts.liveness) -------------------------------------------
    def take_worker_beats(self, beats: dict[str, HostBeat]) -> None:
        """Each remote worker's own heartbeat as its host's beat carries it: one that changed is a sign of life,
        touched into this home's heartbeat file (this machine's clock), where the health check and `swarm status`
        read a local worker's."""
        for state in self.workers.values():
            beat = beats.get(state.host) if state.host else None
            seen = beat.worker_beats.get(state.name) if beat is not None and beat.worker_beats else None
            if seen is not None and seen != state.remote_beat:
                state.remote_beat = seen
                self.ledger.heartbeat(state.name)

    def beats_watched(self, worker: WorkerState) -> bool:
        """Whether `worker`'s own heartbeat is judged (stale: stuck), as a local worker's: on this machine, or on
        a host that is up (its key there, not missing) and forwards its workers' heartbeats."""
        if not worker.host:
            return True
        beat = self.remote.snapshot().beats.get(worker.host) if self.remote is not None else None
        return (beat is not None and beat.worker_beats is not None and worker.host not in self.hosts_missing
                and worker.host not in self.hosts_down)

    def beat_lag(self, worker: WorkerState) -> float:
        """How much later than a local one a worker's heartbeat may be seen (s): a host puts its beat every
        ttl / 3 s, and the bucket is read every POLL s at most."""
        return self.config.hosts.ttl / 3 + POLL if worker.host else 0.0

    def hosts_due(self) -> list[float]:
        """Monotonic times by which the loop must step: when each missing host's grace is over."""
        return [since + supervisor_grace(self.config.hosts.ttl) for since in self.hosts_missing.values()]

    def host_down(self, name: str) -> None:
        """The host's key has expired and the grace after it is over (the host, its lease lapsed, has ended its
        workers): its attempts that have not reported are abandoned, to run elsewhere."""
        if name in self.hosts_down:
            return
        self.hosts_down.add(name)
        lost = [w for w in self.workers.values() if w.host == name and not w.reported]
        self.ledger.append(EventType.CUSTOM, SUPERVISOR, host=name, workers=[w.name for w in lost],
                           summary=f"host {name} is down (its heartbeat key expired): {len(lost)} attempts "
                                   "abandoned, their tasks go back to open")
        board = self.ledger.board()
        for worker in lost:
            self.workers.pop(worker.name, None)
            task = board.get(worker.task)
            if task is not None and task.status in LIVE_STATUSES and task.assignee == worker.name:
                self._abandon(task, f"host {name} is down")
            self.stop_remote(name, worker.name, worker.attempt, f"host {name} was down: this attempt was abandoned")

    def _speaks_for(self, host: str, worker: str, attempt: int, start: str | None = None) -> bool:
        """Whether `worker`'s attempt `attempt` on `host`, started by the order `start` (None: not said), is one this
        supervisor still runs (the fencing check)."""
        state = self.workers.get(worker)
        return (state is not None and state.host == host and state.attempt == attempt
                and (start is None or not state.start or start == state.start))

    @staticmethod
    def remote_metadata(host: str, start: str, **more: str) -> dict[str, str]:
        """A worker's registry metadata for its host and start order (kept there for a restarted supervisor)."""
        return {"remote_host": host, "remote_start": start, **more} if host else {}

    def on_host_event(self, event: HostEvent) -> None:
        if not self._speaks_for(event.host, event.worker, event.attempt, event.start):
            self._refuse(event)
            return
        state = self.workers[event.worker]
        task = self.ledger.board().get(state.task)
        if task is None:
            return
        if event.kind == "mail":
            self._host_mail(event)
        elif event.kind == "started":
            self.base_held(event.host, event.worker)
            self.ledger.update_agent(state.name, SUPERVISOR, pid=event.pid,
                                     metadata=self.remote_metadata(event.host, state.start, remote_tmux=event.tmux))
            self.ledger.append(EventType.WORKER_SPAWNED, SUPERVISOR, task.id, worker=state.name, pid=event.pid,
                               session=state.session, attempt=state.attempt, host=event.host,
                               summary=f"{state.name} started on host {event.host} in tmux session {state.session}")
        elif event.kind == "ended" and event.lapsed and not state.reported and task.assignee == state.name:
            self.workers.pop(state.name, None)
            self._abandon(task, f"host {event.host} ended {state.name}: its lease lapsed (cut off from the server)")
        elif event.kind == "start_failed":
            self.base_not_sent(event.host, event.worker)
            self._launch_failed(task, state, f"on host {event.host}: {event.error}")
        elif event.kind == "ended" and not state.reported and task.assignee == state.name:
            status = (f"was killed by signal {event.signal}" if event.signal is not None
                      else f"exited with status {event.exit_status}" if event.exit_status is not None else "ended")
            reason = f"worker {state.name} on host {event.host} {status} without reporting DONE or FAILED"
            self._fail(task, state, reason + (f"\nLast output:\n{event.tail}" if event.tail else ""),
                       why=f"is dead: {status}")

    def _host_mail(self, event: HostEvent) -> None:
        try:
            message = Message.model_validate(event.message or {})
        except ValueError as exc:
            self.ledger.append(EventType.CUSTOM, SUPERVISOR, summary=f"unreadable mail from {event.worker} on host "
                               f"{event.host} set aside: {str(exc).splitlines()[0]}", host=event.host)
            return
        if message.sender != event.worker:
            self._refuse(event, f"it says it is from {message.sender}")
            return
        if why := self.branch_arrives(event, message, self.workers[event.worker]):
            self.branch_not_home(event, why)
            return
        self.handle(message)

    def branch_not_home(self, event: HostEvent, why: str) -> None:
        """The attempt's work could not be had from its host: the attempt fails with the reason."""
        state = self.workers[event.worker]
        task = self.ledger.board().get(state.task)
        if task is not None and task.assignee == state.name and task.status in LIVE_STATUSES:
            self._fail(task, state, why)

    def _refuse(self, event: HostEvent, why: str = "") -> None:
        """What a host says for an attempt that is not current (or for another's worker): refused, recorded, and
        a worker still running told to stop."""
        if event.kind in ("stopped", "ended"):
            self.stops_sent.discard(event.worker)  # ended: a stop order for it is no longer wanted
            return  # news of an end: nothing to refuse, nothing to stop
        what = event.message.get("type", "mail") if event.kind == "mail" and event.message else event.kind
        why = why or self._stale_why(event)
        self.ledger.append(EventType.CUSTOM, SUPERVISOR, host=event.host, worker=event.worker, attempt=event.attempt,
                           fenced=what, msg=event.id,
                           summary=f"refused late {what} from {event.worker} (attempt {event.attempt}) on host "
                                   f"{event.host}: {why}")
        previous_start = (self._speaks_for(event.host, event.worker, event.attempt)
                          and not self._speaks_for(event.host, event.worker, event.attempt, event.start))
        if not previous_start:  # a previous start's worker is gone already (its host ended it when the current
            self.stop_remote(event.host, event.worker, event.attempt, "this attempt was given up on")  # one came)

    def _stale_why(self, event: HostEvent) -> str:
        """Why `event` does not speak for its worker's current attempt, for the feed."""
        state = self.workers.get(event.worker)
        if state is None:
            return f"attempt {event.attempt} was given up on"
        if state.host == event.host and state.attempt == event.attempt:
            return (f"it speaks for start order {event.start or '(none)'}, a previous start of this attempt: the "
                    f"current one is {state.start}")
        return f"the task's current attempt is {state.attempt} on {state.host or 'this machine'}"


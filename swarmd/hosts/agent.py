"""The host agent (`swarm host join`): runs a supervisor's workers on this machine.

It owns this machine's private tmux server (the host home's socket), takes start, stop and mail orders from its
work queue, forwards its workers' mail and its panes' ends as events, heartbeats into the hosts' bucket, and
answers requests for a worker's log; it types the prompts of its interactive workers into their panes
(`swarmd.hosts.prompts`) and relays terminals to them (`swarmd.hosts.terminal`). Its heartbeat is its lease
(`swarmd.hosts.lease`): cut off for longer than the lease's term, it ends its running workers itself, before the
supervisor gives their tasks to other hosts, and reports them ended (`lapsed`) once the link is back; their mail
and worktrees stay. Its workers are ordinary swarmd workers of the host home: they report into its `supervisor`
mailbox, which the agent empties into the events stream, claiming each message only once the stream has
acknowledged it (the mailbox is the outbox: an agent killed midway sends again, under the same id).

One thread does the work (`step`); the NATS client's loop only fetches orders and wakes it, and keeps the
heartbeat going while the work thread waits for an acknowledgement; a thread of its own ends the workers when the
lease lapses (the work thread may be waiting on the link then).
"""

import asyncio
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeVar

from agentmail import PostOffice
from agentmail.errors import MailError
from protocol.ids import utcnow
from protocol.messages import Message, MessageType, make_message
from protocol.task import Task
from swarmd.config import Config, Profile
from swarmd.errors import SwarmError
from swarmd.git.worktrees import AttemptTree
from swarmd.home import SwarmHome, init_home
from swarmd.hosts.bundles import drop_attempt, receive_attempt, send_branch, spawn_args
from swarmd.hosts.lease import Lease
from swarmd.hosts.link import RETRY_WAIT, NatsLink, publish_until_acked
from swarmd.hosts.liveness import worker_beats
from swarmd.hosts.names import validate_host_name, validate_labels, validate_ssh_destination, validate_swarm_name
from swarmd.hosts.roster import Entry, Roster
from swarmd.hosts.prompts import HostPrompts, Pane
from swarmd.hosts.terminal import Terminals
from swarmd.hosts.streams import DEFAULT_TTL, bucket_ttl, pull
from swarmd.hosts.wire import (HostBeat, HostEvent, Layout, MailOrder, Order, RpcReply, RpcRequest, StartOrder,
                               StopOrder, parse_order)
from swarmd.watch import watch_file
from swarmd.workers.forkserver import ForkServer
from swarmd.workers.spawner import Spawner
from swarmd.workers.tmux import TmuxServer
from swarmd.workers.wrapper import read_tail

log = logging.getLogger("swarmd.hosts")
T = TypeVar("T")

TICK = 0.5  # seconds between looks at the panes when nothing wakes the agent
EXIT_STATUS_GRACE = 2.0  # seconds to wait for tmux to have a dead pane's exit status
SUPERVISOR = "supervisor"


class HostAgent:
    """One host's agent. `serve()` runs until `stop()` (SIGTERM in `swarm host join`); its workers outlive it, and
    the next agent on the same home takes them up again (the roster).

    Raises HostError for a bad name, label, address or credentials file, HomeError for an unusable home.
    """

    def __init__(self, home: SwarmHome, *, name: str, url: str, swarm: str = "swarm", slots: int = 1,
                 labels: list[str] | None = None, credentials: Path | None = None, ca: Path | None = None,
                 project: Path | None = None, ssh: str = "") -> None:
        self.name = validate_host_name(name)
        self.ssh = validate_ssh_destination(ssh) if ssh else ""
        self.labels = validate_labels(labels or [])
        self.slots = slots
        self.home = home
        self.layout = Layout(validate_swarm_name(swarm))
        self.link = NatsLink(url, name=f"host-{name}", credentials=credentials, ca=ca,
                             inbox=self.layout.host_inbox(self.name), on_connect=self._connected)
        init_home(home)
        self.project = (project or home.root.parent).absolute()
        self.tmux = TmuxServer(home.tmux_socket)
        self.forkserver = ForkServer(home.root)  # workers start by fork here too, once `serve` has started it
        self.post = PostOffice(home.root)
        self.outbox = self.post.mailbox(SUPERVISOR)
        self.roster = Roster(home.run_dir / "host" / "roster.json")
        self.live_workers = self.roster.live()  # read by the heartbeat on the NATS thread: replaced, never changed
        self.orders: queue.SimpleQueue[tuple[Order | None, Any]] = queue.SimpleQueue()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.started = utcnow()
        self.ttl_file = home.run_dir / "host" / "ttl"  # the bucket's TTL as last read: a restarted agent's lease
        self._ttl: float | None = _read_ttl(self.ttl_file)
        self.lease = Lease(self._ttl or DEFAULT_TTL)
        self.lapsed: set[tuple[str, int]] = set()  # (worker, attempt) ended by the lease watch, not yet reported
        self._dead_since: dict[str, float] = {}
        self._setting_up = False
        self._kv: Any = None  # the heartbeat bucket (nats-py's KeyValue) once found
        self.terminals = Terminals(self.link, self.layout, self.name, self.tmux, self._session_of)
        self.prompts = HostPrompts(home, self.tmux, self.wake.set)

    # ----- life cycle -----------------------------------------------------------------------------------
    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def serve(self) -> None:
        """Connect (again and again until the server answers), then work until stopped."""
        spawner = self.spawner(Config(name=self.layout.swarm))
        pane_watch = watch_file(spawner.pane_died_file, self.wake.set)
        arrivals = self.outbox.on_arrival(self.wake.set)
        self.link.start()
        with suppress(OSError):  # without it, each pane starts its own interpreter
            self.forkserver.start()
        watch = threading.Thread(target=self.watch_lease, name="lease", daemon=True)
        watch.start()
        try:
            while not self.stopping.is_set():
                self.step()
                self.wake.wait(TICK)
                self.wake.clear()
        finally:
            pane_watch.stop()
            arrivals.stop()
            self.terminals.close()
            self.prompts.stop()
            self.link.close()
            self.forkserver.stop()
            watch.join()

    def step(self) -> None:
        self.forward_mail()
        while not self.orders.empty() and not self.stopping.is_set():
            order, msg = self.orders.get_nowait()
            if order is not None:
                self.apply(order)
            self.link.spawn(_ack(msg))
        self.forward_mail()
        self.check_panes()
        self.prompts.step({e.worker: Pane(e.session, e.command) for e in self.roster.entries.values()
                           if e.command and not e.ended})

    # ----- the NATS side (on the link's loop) -------------------------------------------------------------
    async def _connected(self) -> None:
        """The first time, start setting up (`_set_up`); on each connection after that, beat at once once the
        bucket is known."""
        if not self._setting_up:
            self._setting_up = True
            self.link.spawn(self._set_up())
        elif self._kv is not None:
            self._learn_ttl(await bucket_ttl(self._kv))
            await self._beat(self._kv)

    async def _set_up(self) -> None:
        """Find the heartbeat bucket, then beat and answer requests; find the orders stream (making this host's
        consumer on it), then fetch orders. The supervisor makes both (this host's login may not): until it has,
        look again and again (nats-py keeps the subscriptions across reconnections)."""
        js = self.link.js
        self._kv = await self._until_found(self._first_beat, "the hosts' bucket")
        await self.link.nc.subscribe(self.layout.rpc(self.name), cb=self._answer)
        await self.terminals.listen()
        self.link.spawn(self._heartbeat(self._kv))
        orders = await self._until_found(lambda: pull(js, self.layout.orders(self.name), self.layout.host_consumer(
            self.name), self.layout.orders_stream), f"the orders stream {self.layout.orders_stream}")
        self.link.spawn(self._fetch(orders))

    async def _first_beat(self) -> Any:
        kv = await self.link.js.key_value(self.layout.bucket)
        self._learn_ttl(await bucket_ttl(kv))
        await self._beat(kv)
        return kv

    async def _until_found(self, find: Callable[[], Awaitable[T]], what: str) -> T:
        """`find()`'s result once it has one, trying again each RETRY_WAIT while `what` is not there yet or the link
        is down (a wait for the supervisor is said once in the log)."""
        from nats.js.errors import BucketNotFoundError, NotFoundError

        told = False
        while True:
            if self.link.connected:
                try:
                    return await find()
                except (BucketNotFoundError, NotFoundError):
                    if not told:
                        log.info("waiting for the supervisor to make %s", what)
                        told = True
                except Exception as exc:  # noqa: BLE001 - down meanwhile, refused, timed out: again
                    log.debug("looking for %s: %r", what, exc)
            await asyncio.sleep(RETRY_WAIT)

    def beat(self) -> HostBeat:
        workers = self.live_workers
        return HostBeat(name=self.name, slots=self.slots, labels=self.labels, pid=os.getpid(), started=self.started,
                        workers=workers, ssh=self.ssh, worker_beats=worker_beats(self.home, workers))

    async def _beat(self, kv: Any) -> None:
        """Put the beat; once the server has acknowledged it, the lease runs from when it was sent."""
        sent = time.monotonic()
        await kv.put(self.name, self.beat().model_dump_json().encode())
        self.lease.renew(sent, self._ttl or DEFAULT_TTL)

    def _learn_ttl(self, ttl: float) -> None:
        """Take the bucket's TTL (seconds), kept in `ttl_file` so that an agent restarted while cut off counts
        its first lease by it."""
        if ttl != self._ttl:
            self._ttl = ttl
            try:
                self.ttl_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                self.ttl_file.write_text(f"{ttl}\n")
            except OSError as exc:
                log.warning("cannot keep the TTL in %s: %s", self.ttl_file, exc)

    async def _heartbeat(self, kv: Any) -> None:
        """Put the beat three times per TTL while connected; the TTL is read again at least each second (the
        supervisor sets it, perhaps after this host joined)."""
        last = time.monotonic()
        while True:
            period = (self._ttl or DEFAULT_TTL) / 3
            if not self.link.connected:
                await asyncio.sleep(RETRY_WAIT)
                continue
            await asyncio.sleep(max(0.0, min(1.0, last + period - time.monotonic())))
            try:
                self._learn_ttl(await bucket_ttl(kv))
                if time.monotonic() - last >= self._ttl / 3:
                    last = time.monotonic()
                    await self._beat(kv)
            except Exception as exc:  # noqa: BLE001 - the link went down meanwhile: the next beat tries again
                log.debug("heartbeat not stored: %s", exc)

    async def _fetch(self, orders: Any) -> None:
        import nats.errors

        while True:
            if not self.link.connected:
                await asyncio.sleep(RETRY_WAIT)
                continue
            try:
                msgs = await orders.fetch(16, timeout=1)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                continue
            except Exception as exc:  # noqa: BLE001 - down meanwhile: try again once it is back
                log.debug("fetching orders: %s", exc)
                await asyncio.sleep(RETRY_WAIT)
                continue
            for msg in msgs:
                try:
                    order = parse_order(msg.data)
                except ValueError as exc:
                    log.warning("order that cannot be read, dropped: %s", exc)
                    order = None
                self.orders.put((order, msg))
            self.wake.set()

    async def _answer(self, msg: Any) -> None:
        try:
            request = RpcRequest.model_validate_json(msg.data)
            reply = self.answer(request)
        except Exception as exc:  # noqa: BLE001 - a bad request gets its reason, never kills the handler
            reply = RpcReply(ok=False, error=f"{type(exc).__name__}: {exc}")
        await msg.respond(reply.model_dump_json().encode())

    def answer(self, request: RpcRequest) -> RpcReply:
        """A request from the supervisor's side: `logs` reads the worker's log from `offset`."""
        entry = self.roster.entries.get(request.worker)
        if entry is None:
            return RpcReply(ok=False, error=f"no worker {request.worker!r} on host {self.name}")
        path = self.home.logs_dir / f"{entry.worker}.log"
        try:
            with open(path, "rb") as f:
                f.seek(request.offset)
                data = f.read(max(0, min(request.limit, 1 << 20)))
        except FileNotFoundError:
            data = b""
        pane = self.tmux.pane(entry.session)
        return RpcReply(ok=True, data=data.decode("utf-8", "replace"), offset=request.offset + len(data),
                        running=pane is not None and not pane.dead)

    def _session_of(self, worker: str) -> str | None:
        """The tmux session of `worker` if this host runs it (for a terminal relay)."""
        entry = self.roster.entries.get(worker)
        return entry.session if entry is not None and not entry.ended else None

    # ----- the lease (on a thread of its own) ---------------------------------------------------------------
    def watch_lease(self) -> None:
        """Until stopped: once the lease has lapsed, end every running worker, and look again each TICK while it
        stays lapsed (a worker started meanwhile goes too)."""
        while not self.stopping.is_set():
            remaining = self.lease.remaining()
            if remaining > 0:
                self.stopping.wait(min(remaining, TICK))
                continue
            try:
                self.end_lapsed()
            except (SwarmError, OSError) as exc:  # tmux failed this time: the next look tries again
                log.warning("could not end the workers of a lapsed lease: %s", exc)
            self.stopping.wait(TICK)

    def end_lapsed(self) -> None:
        """Kill the session of each worker whose pane still runs: its attempt is over (the supervisor gives the
        task to another once the key has expired); the work thread reports it ended once it can."""
        panes = self.tmux.panes()
        for entry in list(self.roster.entries.values()):
            pane = panes.get(entry.session)
            if entry.ended or pane is None or pane.dead:
                continue
            log.warning("lease lapsed (no heartbeat acknowledged in time): ending %s (attempt %d)",
                        entry.worker, entry.attempt)
            self.lapsed.add((entry.worker, entry.attempt))
            self.tmux.kill_session(entry.session)

    # ----- the work (on the agent's thread) ----------------------------------------------------------------
    def publish(self, event: HostEvent) -> None:
        """Send `event` and wait until the events stream has it (through any outage; TimeoutError once stopping)."""
        self.link.run(publish_until_acked(self.link, self.layout.events(self.name), event.model_dump_json().encode(),
                                          event.id, closing=self.stopping.is_set), timeout=None)

    def event(self, kind: str, entry: Entry, **fields: Any) -> HostEvent:
        """An event about `entry`'s attempt; its id (the stream's de-duplication key) is the same each time this
        attempt's `kind` is sent, and never another attempt's (a new swarm's `w1` is not the last one's)."""
        default = f"{entry.start_id or self.name + '.' + entry.worker}.{kind}"
        return HostEvent(kind=kind, id=fields.pop("id", default), host=self.name, worker=entry.worker,
                         attempt=entry.attempt, start=entry.start_id, **fields)

    def apply(self, order: Order) -> None:
        if isinstance(order, StartOrder):
            self.start(order)
        elif isinstance(order, StopOrder):
            self.order_stop(order)
        elif isinstance(order, MailOrder):
            entry = self.roster.entries.get(order.worker)
            if entry is not None and not entry.ended and entry.attempt == order.attempt:
                message = Message.model_validate(order.message)
                if not (entry.command and self.prompts.take(entry.worker, message)):
                    self.deliver(message)

    def spawner(self, config: Config) -> Spawner:
        return Spawner(self.home, config.model_copy(update={"project": str(self.project)}), self.tmux, self.forkserver)

    def start(self, order: StartOrder) -> None:
        """Start the ordered worker once: an order delivered again finds it in the roster. A worker of the same
        name from another start (a swarm begun anew on this server) gives way: its session goes."""
        existing = self.roster.entries.get(order.worker)
        if existing is not None and existing.start_id == order.id:
            return
        if existing is not None:
            self.tmux.kill_session(existing.session)
        task = Task.model_validate(order.task)
        profile_name = task.profile or "script"
        config = Config(name=self.layout.swarm, heartbeat_interval=order.heartbeat_interval, durable=order.durable,
                        profiles={profile_name: Profile.model_validate(order.profile)}, default_profile=profile_name)
        spawner = self.spawner(config)
        profile = config.profiles[profile_name]
        entry = Entry(worker=order.worker, task=task.id, attempt=order.attempt,
                      session=spawner.session_name(order.worker), start_id=order.id,
                      command=profile.command if profile.mode == "interactive" else "")
        self.roster.entries[entry.worker] = entry
        if self.lease.lapsed:  # not ours to run now: the supervisor may have given it to another already
            entry.ended = True
            self.changed()
            self.publish(self.event("ended", entry, lapsed=True))
            return
        try:
            self.post.register(entry.worker, role="worker")
            self.deliver(make_message(MessageType.TASK_ASSIGN, SUPERVISOR, entry.worker, {
                "task": task.id, "title": task.title, "description": task.description, "attempt": order.attempt,
                "max_attempts": order.max_attempts, "prompt_file": str(self.home.prompts_dir / f"{entry.worker}.md"),
            }, thread=task.id))
            pane = spawner.spawn(task, worker=entry.worker, attempt=order.attempt, max_attempts=order.max_attempts,
                                 **self.attempt_tree(order, entry))
        except (SwarmError, MailError, OSError) as exc:
            entry.ended = True
            self.changed()
            self.publish(self.event("start_failed", entry, error=str(exc)))
            return
        self.changed()
        self.publish(self.event("started", entry, pid=pane.pid, tmux=str(self.tmux.socket_path)))

    def deliver(self, message: Message) -> None:
        self.post.send(message)

    # ----- worktrees (swarmd.hosts.bundles) ----------------------------------------------------------------
    def attempt_tree(self, order: StartOrder, entry: Entry) -> dict[str, Any]:
        """The worktree of an isolated attempt, made from the base the order's bundle brings: how its worker
        starts there (nothing for an attempt that is not isolated). Raises SwarmError."""
        if order.git is None:
            return {}
        tree = receive_attempt(self.link, self.home, self.layout.swarm, order.git, task=entry.task,
                               attempt=entry.attempt)
        entry.tree = {**tree.detail(), "teardown": order.git.teardown}
        return spawn_args(tree, entry.worker, self.layout.swarm)

    def branch_fields(self, entry: Entry, message: Message) -> dict[str, str]:
        """For a DONE or CHECKPOINT from a worker in a worktree: its branch bundled home, as the event's fields."""
        tree = AttemptTree.from_detail(entry.tree or {})
        if tree is None or message.type not in (MessageType.DONE, MessageType.CHECKPOINT,
                                                 MessageType.OFFERING_READY):
            return {}
        return send_branch(self.link, self.home, self.layout.swarm, tree, host=self.name, worker=entry.worker,
                           closing=self.stopping.is_set)

    def drop_tree(self, entry: Entry) -> None:
        """The supervisor has ended the attempt: its worktree goes (see `swarmd.hosts.bundles.drop_attempt`)."""
        tree = AttemptTree.from_detail(entry.tree or {})
        if tree is None:
            return
        try:
            drop_attempt(self.link, self.layout.swarm, tree, host=self.name, worker=entry.worker,
                         teardown=(entry.tree or {}).get("teardown"), home_tip=entry.home_tip)
        except (SwarmError, OSError) as exc:
            log.warning("the worktree of %s (attempt %d) stays: %s", entry.worker, entry.attempt, exc)
        entry.tree = None
        self.changed()

    def order_stop(self, order: StopOrder) -> None:
        """End a worker now, or after SHUTDOWN and `grace` seconds; a worker already ended is reported stopped."""
        entry = self.roster.entries.get(order.worker)
        if entry is None or entry.attempt != order.attempt:
            entry = Entry(worker=order.worker, task="", attempt=order.attempt, session="", ended=True)
            self.publish(self.event("stopped", entry, id=order.id))
            return
        entry.stop_order, entry.remove, entry.home_tip = order.id, order.remove, order.home_tip
        pane = self.tmux.pane(entry.session)
        if order.grace > 0 and pane is not None and not pane.dead and not entry.ended:
            try:
                self.deliver(make_message(MessageType.SHUTDOWN, SUPERVISOR, entry.worker, {"reason": order.reason},
                                          thread=entry.task))
            except MailError:
                pass  # no mailbox: it is ended at the deadline all the same
            entry.stop_at = time.monotonic() + order.grace
            self.changed()
            return
        self.end(entry, pane)

    def end(self, entry: Entry, pane: Any) -> None:
        """End a worker a stop order named: its session goes (a dead pane stays unless `remove`)."""
        if pane is not None and (not pane.dead or entry.remove):
            self.tmux.kill_session(entry.session)
        entry.ended, entry.stop_at = True, None
        self.changed()
        self.drop_tree(entry)
        self.publish(self.event("stopped", entry, **({"id": entry.stop_order} if entry.stop_order else {})))

    def changed(self) -> None:
        self.roster.save()
        self.live_workers = self.roster.live()

    def forward_mail(self) -> None:
        """Send what this host's workers wrote to the supervisor, in order; mail from anyone else is set aside
        (a host speaks for its own workers only)."""
        for delivered in self.outbox.list(limit=256):
            if self.stopping.is_set():
                return
            message = delivered.message
            entry = self.roster.entries.get(message.sender)
            if entry is None:
                self.outbox.set_aside(delivered, f"{message.sender} is not a worker of host {self.name}")
                continue
            wire = json.loads(message.to_json())
            self.publish(self.event("mail", entry, id=message.id, message=wire, **self.branch_fields(entry, message)))
            self.outbox.claim_loaded(delivered)

    def check_panes(self) -> None:
        """Report each pane that has ended (after its mail), and end the workers whose grace is over."""
        live = [e for e in self.roster.entries.values() if not e.ended]
        if not live:
            return
        panes = self.tmux.panes()
        now = time.monotonic()
        for entry in live:
            pane = panes.get(entry.session)
            if entry.stop_at is not None:
                if pane is None or pane.dead or now >= entry.stop_at:
                    self.end(entry, pane)
                continue
            if pane is not None and not pane.dead:
                continue
            spawner = self.spawner(Config(name=self.layout.swarm))
            status = pane.exit_status if pane is not None else None
            status = status if status is not None else spawner.exit_status(entry.worker)
            signal = pane.signal if pane is not None else None
            if pane is not None and status is None and signal is None:
                first = self._dead_since.setdefault(entry.worker, now)
                if now - first < EXIT_STATUS_GRACE:
                    continue
            self._dead_since.pop(entry.worker, None)
            self.forward_mail()  # its last words go before the news of its end
            entry.ended = True
            self.changed()
            tail = read_tail(spawner.log_path(entry.worker), 0)[-800:]
            lapsed = (entry.worker, entry.attempt) in self.lapsed
            self.lapsed.discard((entry.worker, entry.attempt))
            self.publish(self.event("ended", entry, exit_status=status, signal=signal, tail=tail, lapsed=lapsed))


def _read_ttl(path: Path) -> float | None:
    """The TTL kept in `path` (seconds), None when there is none or it is not a positive number."""
    try:
        ttl = float(path.read_text())
    except (OSError, ValueError):
        return None
    return ttl if 0 < ttl <= 3600 else None  # the range `[hosts] ttl` allows


async def _ack(msg: Any) -> None:
    try:
        await msg.ack()
    except Exception as exc:  # noqa: BLE001 - not acked: delivered again, and applied once (the roster)
        log.debug("ack not sent: %s", exc)

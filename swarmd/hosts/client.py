"""The supervisor's side of the hosts' wire: who is up (the heartbeat bucket), what the hosts report (the events
stream), and the orders it sends them (their work queues).

The NATS client's loop does the talking; the supervisor's thread reads `snapshot()` and `take_events()` and calls
`send()` and `ack()`, none of which waits for the network: orders go through an outbox on the loop, published in
order and retried (under their ids) until the stream acknowledges them.
"""

import asyncio
import logging
import queue
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from swarmd.hosts.link import RETRY_WAIT, NatsLink, publish_until_acked
from swarmd.hosts.names import HostError
from swarmd.hosts.settings import HostsLink
from swarmd.hosts.streams import bucket_beats, ensure_bucket, ensure_streams, existing_ttl, pull
from swarmd.hosts.wire import HostBeat, HostEvent, Layout, MailOrder, StartOrder, StopOrder

log = logging.getLogger("swarmd.hosts")

POLL = 1.0  # at most this many seconds between reads of the heartbeat bucket (ttl / 4 when that is shorter)


class Snapshot(NamedTuple):
    """The hosts whose keys were there at the last read (name -> beat), and whether a missing key means a host
    down: only when the link had been up for a whole TTL before the read (a host needs that long to beat
    again after the server, or this link, comes back), and a whole TTL of the bucket's before this supervisor
    shortened it had passed (a key put before then is a lease for the longer TTL: `swarmd.hosts.lease`).
    `fresh`: the last read succeeded, past any shortened TTL's term (every host beating then is in `beats`): enough
    to say what the hosts up offer. Before then, a host seen (by a read before the shortening, or a later one)
    stays in `beats` though its key is gone: shortening the bucket's TTL expires at once the keys put more than
    the new TTL ago, live hosts' too, until they beat again."""

    beats: dict[str, HostBeat]
    settled: bool
    fresh: bool = False


class HostsClient:
    """One supervisor's link to its hosts. `start()` returns at once; `close()` tries for a moment to publish
    what the outbox holds. Raises HostError from the constructor for a bad address, credentials or CA file."""

    def __init__(self, link: HostsLink, *, ttl: float, swarm: str, wake: Callable[[], None]) -> None:
        self.layout = Layout(swarm)
        self.ttl = ttl
        self.wake = wake
        self.link = NatsLink(link.url, name=f"supervisor-{swarm}", on_connect=self._connected,
                             credentials=link.credentials, ca=link.ca, inbox=self.layout.supervisor_inbox)
        self.events: queue.SimpleQueue[tuple[HostEvent, Any]] = queue.SimpleQueue()
        self._snapshot = Snapshot({}, False)
        self._outbox: asyncio.Queue | None = None
        self._ready = False
        self._quiet_until = float("-inf")  # monotonic: no key's absence means a host down before then
        self._closing = False

    def start(self) -> "HostsClient":
        self.link.start()
        return self

    def close(self, flush: float = 2.0) -> None:
        """Stop; give the outbox up to `flush` seconds to go out first."""
        deadline = time.monotonic() + flush
        while self._outbox is not None and not self._outbox.empty() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._closing = True
        self.link.close()

    # ----- for the supervisor's thread --------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def take_events(self, limit: int = 256) -> list[tuple[HostEvent, Any]]:
        taken = []
        while len(taken) < limit and not self.events.empty():
            taken.append(self.events.get_nowait())
        return taken

    def ack(self, msg: Any) -> None:
        self.link.spawn(_ack(msg))

    def send(self, host: str, order: StartOrder | StopOrder | MailOrder) -> None:
        """Queue `order` for `host`: published in order, under its id, until the stream has it."""
        item = (self.layout.orders(host), order.model_dump_json().encode(), order.id)
        self.link.loop.call_soon_threadsafe(self._enqueue, item)

    def _enqueue(self, item: tuple[str, bytes, str]) -> None:
        if self._outbox is None:
            self._outbox = asyncio.Queue()
            self.link.spawn(self._drain())
        self._outbox.put_nowait(item)

    # ----- on the link's loop -----------------------------------------------------------------------------
    async def _connected(self) -> None:
        js = self.link.js
        await ensure_streams(js, self.layout)
        previous = await existing_ttl(js, self.layout)
        if previous is not None and previous > self.ttl:  # the hosts up, read before the shortening expires keys
            kept = await bucket_beats(js, await js.key_value(self.layout.bucket), self.layout)
            self._snapshot = Snapshot({**self._snapshot.beats, **kept}, False)
        kv = await ensure_bucket(js, self.layout, self.ttl)
        if previous is not None and previous > self.ttl:
            self._quiet_until = max(self._quiet_until, time.monotonic() + previous)
        if self._ready:
            return
        self._ready = True
        events = await pull(js, self.layout.all_events, self.layout.supervisor_consumer, self.layout.events_stream)
        self.link.spawn(self._poll(kv))
        self.link.spawn(self._fetch(events))

    async def _drain(self) -> None:
        assert self._outbox is not None
        while True:
            subject, data, msg_id = await self._outbox.get()
            await publish_until_acked(self.link, subject, data, msg_id, closing=lambda: self._closing)
            self._outbox.task_done()

    async def _poll(self, kv: Any) -> None:
        """Read every host's key, again and again; a failed read keeps the last snapshot (unsettled)."""
        while True:
            since = self.link.connected_since
            started = time.monotonic()
            try:
                beats = await bucket_beats(self.link.js, kv, self.layout)
                if started < self._quiet_until:  # a key gone within a shortened TTL's term: its host is still up
                    beats = {**self._snapshot.beats, **beats}
                settled = (since is not None and since <= started - self.ttl and self.link.connected_since == since
                           and started >= self._quiet_until)
                changed = set(beats) != set(self._snapshot.beats) or settled != self._snapshot.settled or any(
                    b.workers != getattr(self._snapshot.beats.get(k), "workers", None) for k, b in beats.items()
                ) or not self._snapshot.fresh
                self._snapshot = Snapshot(beats, settled, fresh=started >= self._quiet_until)
                if changed:
                    self.wake()
            except Exception as exc:  # noqa: BLE001 - down: the snapshot stays, unsettled until a whole TTL is up
                log.debug("reading the hosts' bucket: %s", exc)
                self._snapshot = Snapshot(self._snapshot.beats, False)
            await asyncio.sleep(min(POLL, self.ttl / 4))

    async def _fetch(self, events: Any) -> None:
        import nats.errors

        while True:
            if not self.link.connected:
                await asyncio.sleep(RETRY_WAIT)
                continue
            try:
                msgs = await events.fetch(64, timeout=1)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                continue
            except Exception as exc:  # noqa: BLE001 - down meanwhile: again once it is back
                log.debug("fetching host events: %s", exc)
                await asyncio.sleep(RETRY_WAIT)
                continue
            for msg in msgs:
                event = self._event(msg)
                if event is None:
                    await _ack(msg)
                else:
                    self.events.put((event, msg))
            self.wake()

    def _event(self, msg: Any) -> HostEvent | None:
        """The event in `msg` if it is well-formed and its host is the one whose subject it came on (a host
        speaks for itself only); None (logged) otherwise."""
        try:
            event = HostEvent.model_validate_json(msg.data)
            if event.host != self.layout.host_of(msg.subject):
                raise HostError(f"event for host {event.host!r} sent on {msg.subject}")
        except (ValueError, HostError) as exc:
            log.warning("host event refused: %s", exc)
            return None
        return event


async def _ack(msg: Any) -> None:
    try:
        await msg.ack()
    except Exception as exc:  # noqa: BLE001 - not acked: delivered again, and handled once
        log.debug("ack not sent: %s", exc)

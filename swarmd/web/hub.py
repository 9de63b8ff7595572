"""One follower of the ledger fanned out to every open event stream of the dashboard.

A single thread follows `events.jsonl` (`Ledger.follow`: file events wake it) and hands each new event,
serialized once as a server-sent event, to the event loop, which puts it in every subscriber's queue. A
page that is open and idle costs its connection only: no timer and no read per client. A subscriber that
falls too far behind is cut off; its browser reconnects with `Last-Event-ID` and catches up from the file.
"""

import asyncio
import logging
import threading
from dataclasses import dataclass, field

from protocol.event import Event
from swarmd.ledger.log import Ledger

log = logging.getLogger("swarmd.web")
MAX_BEHIND = 10_000  # events a subscriber may have queued before it is cut off (it reconnects and replays)
PING_EVERY = 25.0  # seconds between comment lines on every stream, so a dead peer is noticed
CLOSE = b""  # queued to a subscriber that must end its stream


def sse(event: Event) -> bytes:
    """One server-sent event: `id:` the ledger seq (what `Last-Event-ID` resumes from), `data:` the event JSON."""
    return f"id: {event.seq}\ndata: {event.model_dump_json()}\n\n".encode()


@dataclass(eq=False)
class Subscriber:
    """One open stream: its queue of (seq, bytes) items, seq 0 for a ping, CLOSE to end it."""

    queue: asyncio.Queue[tuple[int, bytes]] = field(default_factory=asyncio.Queue)


class FeedHub:
    """Follows the ledger from its end at `start()` and fans events out to subscribers (on the event loop)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.subscribers: set[Subscriber] = set()
        self.last_seq = 0  # the last seq handed to subscribers
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pinger: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start following; call on the event loop that serves the streams."""
        self._loop = asyncio.get_running_loop()
        self.last_seq = self.ledger.last_seq()
        self._thread = threading.Thread(target=self._follow, args=(self.last_seq,), name="web-feed", daemon=True)
        self._thread.start()
        self._pinger = self._loop.create_task(self._ping())

    def stop(self) -> None:
        self._stop.set()
        if self._pinger is not None:
            self._pinger.cancel()
        for subscriber in self.subscribers:
            subscriber.queue.put_nowait((0, CLOSE))
        if self._thread is not None:
            self._thread.join(timeout=5)

    def subscribe(self) -> Subscriber:
        subscriber = Subscriber()
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def _follow(self, since: int) -> None:
        assert self._loop is not None
        try:
            for event in self.ledger.follow(since_seq=since, stop=self._stop):
                self._loop.call_soon_threadsafe(self._publish, event.seq, sse(event))
        except Exception:  # noqa: BLE001 - said once; streams still catch up from the file on reconnect
            log.exception("the dashboard stopped following the ledger")

    def _publish(self, seq: int, data: bytes) -> None:
        self.last_seq = seq
        for subscriber in list(self.subscribers):
            if subscriber.queue.qsize() >= MAX_BEHIND:
                self.subscribers.discard(subscriber)
                subscriber.queue.put_nowait((0, CLOSE))
            else:
                subscriber.queue.put_nowait((seq, data))

    async def _ping(self) -> None:
        while True:
            await asyncio.sleep(PING_EVERY)
            for subscriber in list(self.subscribers):
                subscriber.queue.put_nowait((0, b": ping\n\n"))

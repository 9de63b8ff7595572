"""Waking up when mail arrives: a watchdog observer on `new/` whose handler only signals.

The observer (inotify on Linux) owns its thread; the handler calls a callback that should do nothing but
signal. The reader scans `new/` itself, so events are only hints: a scan at start finds mail that arrived
while nobody watched, and a missed or duplicated event costs nothing but a scan.
"""

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from watchdog.events import FileCreatedEvent, FileMovedEvent, FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import DEFAULT_OBSERVER_TIMEOUT, BaseObserver
from watchdog.observers.polling import PollingObserver
from watchdog.utils import platform

if TYPE_CHECKING:
    from agentmail.mailbox import Delivered, Mailbox

POLL_INTERVAL = 0.1  # seconds between directory snapshots of the polling observer
STOP_CHECK = 0.1  # how often a watch looks at a caller's `stop` Event (it cannot wake us itself)


if platform.is_linux():
    from watchdog.observers.inotify import InotifyEmitter
    from watchdog.observers.inotify_c import InotifyConstants

    class _ArrivalEmitter(InotifyEmitter):
        """inotify asked only for arrivals (files created in or moved into the directory).

        watchdog holds every IN_MOVED_FROM event for half a second to pair it with its IN_MOVED_TO, and
        events queued behind it wait too. A claim is a move out of `new/`, so with the default mask each
        claim would delay the next arrival by 0.5 s. Departures are of no interest to a reader.
        """

        def get_event_mask_from_filter(self) -> int:  # type: ignore[override]
            return InotifyConstants.IN_CREATE | InotifyConstants.IN_MOVED_TO | InotifyConstants.IN_DELETE_SELF


def _native_observer() -> BaseObserver:
    """The platform's event observer; on Linux, inotify restricted to arrivals."""
    if not platform.is_linux():
        return Observer()
    return BaseObserver(_ArrivalEmitter, timeout=DEFAULT_OBSERVER_TIMEOUT)


class _Signal(FileSystemEventHandler):
    """Calls back on files created in or moved into the watched directory; other events are ignored."""

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback

    def on_any_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, (FileCreatedEvent, FileMovedEvent)):
            self._callback()


class ArrivalWatch:
    """A running observer on one directory; `stop()` (or leaving the `with` block) ends it."""

    def __init__(self, directory: Path, callback: Callable[[], None], *, polling: bool = False) -> None:
        self.directory = directory
        handler = _Signal(callback)
        self._observer: BaseObserver | None = None if polling else _start(_native_observer(), directory, handler)
        self.polling = self._observer is None
        if self._observer is None:
            self._observer = _start(PollingObserver(timeout=POLL_INTERVAL), directory, handler, fallback=False)

    def stop(self) -> None:
        observer = self._observer
        if observer is not None:
            self._observer = None
            observer.stop()
            observer.join()

    def __enter__(self) -> "ArrivalWatch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _start(observer: BaseObserver, directory: Path, handler: _Signal, *, fallback: bool = True) -> BaseObserver | None:
    """Schedule and start `observer`; with `fallback`, None (instead of an error) if it cannot start."""
    try:
        observer.schedule(handler, str(directory), recursive=False)
        observer.start()
    except OSError:  # e.g. inotify watch or instance limits reached: the caller falls back to polling
        if not fallback:
            raise
        return None
    return observer


def watch_mailbox(mailbox: "Mailbox", *, claim: bool, polling: bool, stop: threading.Event | None,
                  timeout: float | None) -> Iterator["Delivered"]:
    """The body of `Mailbox.watch`: scan, yield what is new, sleep until woken, repeat."""
    deadline = None if timeout is None else time.monotonic() + timeout
    wake = threading.Event()
    seen: set[str] = set()
    with ArrivalWatch(mailbox.path / "new", wake.set, polling=polling):
        while True:
            wake.clear()  # before the scan: an arrival during the scan sets it again
            for delivered in mailbox.scan(seen):
                if claim and (delivered := mailbox.claim_loaded(delivered)) is None:
                    continue
                yield delivered
            if not _sleep(wake, stop, deadline):
                return


def _sleep(wake: threading.Event, stop: threading.Event | None, deadline: float | None) -> bool:
    """Wait for `wake`; False once `stop` is set or the deadline has passed."""
    while stop is None or not stop.is_set():
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return False
        if stop is not None:
            remaining = STOP_CHECK if remaining is None else min(remaining, STOP_CHECK)
        if wake.wait(remaining):
            return True
    return False

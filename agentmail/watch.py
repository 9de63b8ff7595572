"""Waking up when mail arrives: file events where the kernel gives them, and a rescan on a period always.

A watch calls back when something may have arrived; the callback should do nothing but signal. Events come
from a watchdog observer (inotify on Linux), whose handler only signals. Some file systems raise no event
for some writes (an overlay whose lower directory is written, a network file system), so every watch also
rescans on a period, and calls back when the rescan sees something new. Without any event at all (asked
for, or no inotify instance or watch left to the user) the rescan runs often and is the only source: one
warning per process says so. The reader scans itself, so a call back is only a hint: a missed or duplicated
one costs nothing but a scan.
"""

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watchdog.events import FileCreatedEvent, FileMovedEvent, FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import DEFAULT_OBSERVER_TIMEOUT, BaseObserver
from watchdog.utils import platform

if TYPE_CHECKING:
    from agentmail.mailbox import Delivered
    from agentmail.transport import MailboxAPI

RESCAN_PERIOD = 1.0  # seconds between rescans of a watch that also has file events (events can be missing)
POLL_INTERVAL = 0.1  # seconds between rescans of a watch without file events
STOP_CHECK = 0.1  # how often a watch looks at a caller's `stop` Event (it cannot wake us itself)

log = logging.getLogger("agentmail.watch")
_warned = threading.Event()
_warn_lock = threading.Lock()


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


def warn_polling(what: Path, exc: OSError) -> None:
    """Log, once per process, that watches run by polling because file events cannot be had."""
    with _warn_lock:
        if _warned.is_set():
            return
        _warned.set()
    log.warning("no file events for %s (%s): watching by polling every %g s from now on",
                what, exc.strerror or exc, POLL_INTERVAL)


class _Signal(FileSystemEventHandler):
    """Calls back on files created in or moved into the watched directory; other events are ignored."""

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback

    def on_any_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, (FileCreatedEvent, FileMovedEvent)):
            self._callback()


class _Rescan(threading.Thread):
    """Every `period` seconds, probes and calls back when `fires(previous, current)` says so."""

    def __init__(self, probe: Callable[[], Any], fires: Callable[[Any, Any], bool], callback: Callable[[], None],
                 period: float) -> None:
        super().__init__(name="rescan", daemon=True)
        self._probe, self._fires, self._callback, self._period = probe, fires, callback, period
        self._last = probe()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self._period):
            current = self._probe()
            if self._fires(self._last, current):
                self._callback()
            self._last = current


class Watch:
    """Calls `callback` when `fires(before, now)` holds for two probes of the watched path, checked on file
    events under `directory` (when the kernel gives them) and on a period always; `stop()` (or leaving the
    `with` block) ends it. `polling` is True when there are no file events (asked for, or unavailable)."""

    def __init__(self, directory: Path, callback: Callable[[], None], *, handler: FileSystemEventHandler,
                 observer: Callable[[], BaseObserver], probe: Callable[[], Any], fires: Callable[[Any, Any], bool],
                 polling: bool = False, event_filter: list[type[FileSystemEvent]] | None = None) -> None:
        self.directory = directory
        self._observer: BaseObserver | None = None
        if not polling:
            try:
                self._observer = _start(observer(), directory, handler, event_filter)
            except OSError as exc:  # no inotify instance or watch left, or no events here: poll instead
                warn_polling(directory, exc)
        self.polling = self._observer is None
        self._rescan = _Rescan(probe, fires, callback, POLL_INTERVAL if self.polling else RESCAN_PERIOD)
        self._rescan.start()

    def stop(self) -> None:
        """End the watch: no call back starts after this returns."""
        self._rescan.done.set()
        if self._rescan is not threading.current_thread():
            self._rescan.join()
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join()

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ArrivalWatch(Watch):
    """Calls back whenever a file lands in `directory` (created or moved in; departures are ignored)."""

    def __init__(self, directory: Path, callback: Callable[[], None], *, polling: bool = False) -> None:
        super().__init__(directory, callback, handler=_Signal(callback), observer=_native_observer,
                         probe=lambda: _names(directory), fires=lambda before, now: bool(now - before),
                         polling=polling)


def _names(directory: Path) -> frozenset[str]:
    try:
        return frozenset(os.listdir(directory))
    except OSError:
        return frozenset()


def _start(observer: BaseObserver, directory: Path, handler: FileSystemEventHandler,
           event_filter: list[type[FileSystemEvent]] | None) -> BaseObserver:
    """Schedule and start `observer`; OSError if it cannot (no inotify instance or watch left)."""
    observer.schedule(handler, str(directory), recursive=False, event_filter=event_filter)
    observer.daemon = True
    observer.start()
    return observer


def watch_mailbox(mailbox: "MailboxAPI", *, claim: bool, polling: bool, stop: threading.Event | None,
                  timeout: float | None) -> Iterator["Delivered"]:
    """The body of `watch` on any transport: scan, yield what is new, sleep until woken, repeat."""
    deadline = None if timeout is None else time.monotonic() + timeout
    wake = threading.Event()
    seen: set[str] = set()
    arrivals = mailbox.on_arrival(wake.set, polling=polling)
    try:
        while True:
            wake.clear()  # before the scan: an arrival during the scan sets it again
            for delivered in mailbox.scan(seen):
                if claim and (delivered := mailbox.claim_loaded(delivered)) is None:
                    continue
                yield delivered
            if not _sleep(wake, stop, deadline):
                return
    finally:
        arrivals.stop()


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

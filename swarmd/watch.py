"""Wake a loop when a file changes: file events whose handler only calls back (never does work), and a
rescan of the file's size and times on a period, for writes that raise no event (see `agentmail.watch`)."""

import os
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from agentmail.watch import Watch

# Writes only. Reading the file (open, close without writing) must not wake anyone: the supervisor reads the
# ledger on every step, and would otherwise wake itself forever.
_WRITES: list[type[FileSystemEvent]] = [FileModifiedEvent, FileClosedEvent, FileCreatedEvent, FileMovedEvent]


class _Poke(FileSystemEventHandler):
    def __init__(self, path: Path, callback: Callable[[], None]) -> None:
        self.path, self.callback = str(path), callback

    def on_any_event(self, event: FileSystemEvent) -> None:
        if self.path in (event.src_path, getattr(event, "dest_path", None)):
            self.callback()


def _signature(path: Path) -> tuple[int, int, int, int] | None:
    """What changes when the file is written or replaced: inode, size, mtime and ctime; None if absent."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def watch_file(path: Path, callback: Callable[[], None], *, polling: bool = False) -> Watch:
    """Call `callback` (on a watch thread) whenever `path` is written; `.stop()` the result when done.

    Without file events (asked for with `polling`, or no inotify instance or watch left) it polls, after
    one warning per process."""
    return Watch(path.parent, callback, handler=_Poke(path, callback), observer=Observer,
                 probe=lambda: _signature(path), fires=lambda before, now: before != now, polling=polling,
                 event_filter=_WRITES)

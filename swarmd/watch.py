"""Wake a loop when a file changes: a watchdog observer whose handler only calls back (never does work)."""

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
from watchdog.observers.api import BaseObserver


# Writes only. Reading the file (open, close without writing) must not wake anyone: the supervisor reads the
# ledger on every step, and would otherwise wake itself forever.
_WRITES: list[type[FileSystemEvent]] = [FileModifiedEvent, FileClosedEvent, FileCreatedEvent, FileMovedEvent]


class _Poke(FileSystemEventHandler):
    def __init__(self, path: Path, callback: Callable[[], None]) -> None:
        self.path, self.callback = str(path), callback

    def on_any_event(self, event: FileSystemEvent) -> None:
        if self.path in (event.src_path, getattr(event, "dest_path", None)):
            self.callback()


def watch_file(path: Path, callback: Callable[[], None]) -> BaseObserver:
    """Call `callback` on the observer's thread whenever `path` is written; `.stop()` the result when done."""
    observer = Observer()
    observer.schedule(_Poke(path, callback), str(path.parent), recursive=False, event_filter=_WRITES)
    observer.daemon = True
    observer.start()
    return observer

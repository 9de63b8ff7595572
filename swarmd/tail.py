"""`tail -f` for a file, woken by watchdog rather than a sleep loop."""

import threading
from collections.abc import Iterator
from pathlib import Path

from swarmd.watch import watch_file

CHUNK = 64 * 1024


def tail_file(path: Path, follow: bool = False, stop: threading.Event | None = None) -> Iterator[str]:
    """Yield the file's text, then (with `follow`) whatever is appended until `stop` is set."""
    changed = threading.Event()
    observer = watch_file(path, changed.set) if follow else None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            while True:
                changed.clear()
                while chunk := f.read(CHUNK):
                    yield chunk
                if not follow or (stop is not None and stop.is_set()):
                    return
                changed.wait(1.0)
    finally:
        if observer is not None:
            observer.stop()

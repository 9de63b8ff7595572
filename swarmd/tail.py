"""`tail -f` for a file, woken by watchdog rather than a sleep loop."""

import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from protocol.text import strip_escapes
from swarmd.watch import watch_file

CHUNK = 64 * 1024
# Watchdog wakes a follower at each write; this bounds the wait should an inotify event ever be lost.
_SAFETY_WAIT = 1.0


def tail_file(path: Path, follow: bool = False, stop: threading.Event | None = None) -> Iterator[str]:
    """Yield the file's text, then (with `follow`) whatever is appended until `stop` is set; what was written
    up to that moment is still yielded."""
    changed = threading.Event()
    observer = watch_file(path, changed.set) if follow else None
    if follow and stop is not None:  # setting `stop` ends the wait below at once
        threading.Thread(target=lambda: (stop.wait(), changed.set()), daemon=True).start()
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            while True:
                changed.clear()
                stopping = stop is not None and stop.is_set()  # read before the last read: nothing is missed
                while chunk := f.read(CHUNK):
                    yield chunk
                if not follow or stopping:
                    return
                changed.wait(_SAFETY_WAIT)
    finally:
        if observer is not None:
            observer.stop()


def plain(chunks: Iterable[str]) -> Iterator[str]:
    """Terminal output as plain text (see `protocol.text.strip_escapes`). The end of a chunk after its last
    line break waits for the next chunk when it holds an ESC, so that a sequence split between two chunks is
    still recognised."""
    rest = ""
    for chunk in chunks:
        text = rest + chunk
        cut = text.rfind("\n") + 1
        if "\x1b" not in text[cut:]:
            cut = len(text)
        if cut:
            yield strip_escapes(text[:cut])
        rest = text[cut:]
    if rest:
        yield strip_escapes(rest)

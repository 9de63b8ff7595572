"""Reading the event log: complete lines only, seeking by seq, filtering, and following like `tail -f`.

A line is complete when it ends in "\\n". A final line without one is either being written or was torn by
a crash: readers never see it, and the next appender truncates a torn one away (under the ledger lock).
"""

import errno
import os
import threading
from collections.abc import Collection, Iterator
from pathlib import Path

from pydantic import ValidationError

from protocol.event import Event
from swarmd.errors import LedgerError
from swarmd.ledger.lines import complete_end, complete_lines, next_seq_line

LOG_NAME = "events.jsonl"
_BISECT_WINDOW = 64 << 10
# The watchdog observer wakes a follower; this bounds the wait if an inotify event is ever lost, and how
# long a follower takes to notice `stop`.
_FOLLOW_SAFETY_WAIT = 0.25


def parse_event(line: bytes) -> Event | None:
    """The event on one line, or None for a line that is not one (skipped, never fatal)."""
    try:
        return Event.model_validate_json(line)
    except ValidationError:
        return None


def read_events(path: Path, start: int = 0) -> Iterator[tuple[int, Event | None]]:
    """(offset just past the line, its event or None) for each complete line from byte `start`."""
    try:
        for pos, line in complete_lines(path, start):
            yield pos, parse_event(line) if line.strip() else None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LedgerError(f"{path} is a symbolic link: refusing to read through it") from None
        raise


def matches(event: Event, types: Collection[str] | None = None, agent: str | None = None,
            task: str | None = None) -> bool:
    return ((not types or event.type in types) and (agent is None or event.agent == agent)
            and (task is None or event.task == task))


def offset_after(path: Path, seq: int) -> int:
    """The offset of the first line with a seq above `seq`: a bisection (seqs grow with offsets), then a scan."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    try:
        lo, hi = 0, complete_end(fd, os.fstat(fd).st_size)
        while seq > 0 and hi - lo > _BISECT_WINDOW:
            found = next_seq_line(fd, (lo + hi) // 2, hi)
            if found is None:
                break
            start, after, line_seq = found
            lo, hi = (after, hi) if line_seq <= seq else (lo, start)
    finally:
        os.close(fd)
    start = lo
    for after, event in read_events(path, lo):
        if event is not None and event.seq > seq:
            return start
        start = after
    return start


def follow(path: Path, offset: int, types: Collection[str] | None = None, agent: str | None = None,
           task: str | None = None, stop: threading.Event | None = None) -> Iterator[Event]:
    """Yield matching events from byte `offset` on, waiting for appends until `stop` is set."""
    from swarmd.watch import watch_file  # the file watcher (watchdog): only a follower needs it, not every reader

    wake = threading.Event()
    observer = watch_file(path, wake.set)
    if stop is not None:  # setting `stop` must end the wait below at once, not at the next append
        threading.Thread(target=lambda: (stop.wait(), wake.set()), daemon=True).start()
    try:
        while stop is None or not stop.is_set():
            wake.clear()
            for offset, event in read_events(path, offset):
                if event is not None and matches(event, types, agent, task):
                    yield event
            wake.wait(_FOLLOW_SAFETY_WAIT)
    finally:
        observer.stop()

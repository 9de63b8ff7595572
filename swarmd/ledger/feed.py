"""Reading the event log: complete lines only, seeking by seq, filtering, and following like `tail -f`.

A line is complete when it ends in "\\n". A final line without one is either being written or was torn by
a crash: readers never see it, and the next appender truncates a torn one away (under the ledger lock).
"""

import errno
import json
import os
import threading
from collections.abc import Collection, Iterator
from pathlib import Path

from pydantic import ValidationError

from protocol.event import Event
from swarmd.errors import LedgerError

LOG_NAME = "events.jsonl"
_READ_CHUNK = 4 << 20
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
        f = os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb")
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LedgerError(f"{path} is a symbolic link: refusing to read through it") from None
        raise
    with f:
        f.seek(start)
        pos, rest = start, b""
        while chunk := f.read(_READ_CHUNK):
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for line in lines:
                pos += len(line) + 1
                yield pos, parse_event(line) if line.strip() else None


def matches(event: Event, types: Collection[str] | None = None, agent: str | None = None,
            task: str | None = None) -> bool:
    return ((not types or event.type in types) and (agent is None or event.agent == agent)
            and (task is None or event.task == task))


def complete_end(fd: int, size: int) -> int:
    """The offset just past the last "\\n" at or before `size` (0 if there is none)."""
    pos = size
    step = 4096
    while pos > 0:
        lo = max(0, pos - step)
        i = os.pread(fd, pos - lo, lo).rfind(b"\n")
        if i >= 0:
            return lo + i + 1
        pos, step = lo, step * 2
    return 0


def line_before(fd: int, end: int) -> tuple[int, bytes]:
    """The complete line whose "\\n" is at `end - 1`: (its start, its bytes without the newline)."""
    start = complete_end(fd, end - 1)
    return start, os.pread(fd, end - 1 - start, start)


def seq_of(line: bytes) -> int | None:
    try:
        seq = json.loads(line)["seq"]
    except (ValueError, KeyError, TypeError):
        return None
    return seq if isinstance(seq, int) else None


def last_seq(fd: int, end: int) -> int:
    """The seq of the last readable line ending at or before `end`, a line boundary (0 for none)."""
    while end > 0:
        end, line = line_before(fd, end)
        seq = seq_of(line)
        if seq is not None:
            return seq
    return 0


def offset_after(path: Path, seq: int) -> int:
    """The offset of the first line with a seq above `seq`: a bisection (seqs grow with offsets), then a scan."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    try:
        lo, hi = 0, complete_end(fd, os.fstat(fd).st_size)
        while seq > 0 and hi - lo > _BISECT_WINDOW:
            found = _next_seq_line(fd, (lo + hi) // 2, hi)
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


def _next_seq_line(fd: int, pos: int, limit: int) -> tuple[int, int, int] | None:
    """(start, end, seq) of the first readable line that starts at or after `pos` and ends before `limit`."""
    start = pos if pos == 0 else _find_newline(fd, pos - 1, limit)
    while start is not None and start < limit:
        end = _find_newline(fd, start, limit)
        if end is None:
            return None
        line_seq = seq_of(os.pread(fd, end - 1 - start, start))
        if line_seq is not None:
            return start, end, line_seq
        start = end
    return None


def _find_newline(fd: int, pos: int, limit: int) -> int | None:
    """The offset just past the first "\n" at or after `pos` and before `limit`."""
    step = 4096
    while pos < limit:
        chunk = os.pread(fd, min(step, limit - pos), pos)
        i = chunk.find(b"\n")
        if i >= 0:
            return pos + i + 1
        if not chunk:
            return None
        pos, step = pos + len(chunk), step * 2
    return None


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

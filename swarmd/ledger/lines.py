"""The event log's lines as bytes, with the standard library alone: where the complete lines end, the line
before an offset, a line's seq. The models' reader (`feed`) and the lean reader (`lean`) both build on it.

A line is complete when it ends in "\\n"; a final line without one is being written or was torn by a crash.
"""

import json
import os
from collections.abc import Iterator
from pathlib import Path

READ_CHUNK = 4 << 20


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


def complete_lines(path: Path, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """(offset just past the line, the line without its newline) for each complete line from byte `start`;
    nothing if the log does not exist. OSError (ELOOP for a symlinked log) is the caller's to phrase."""
    try:
        f = os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb")
    except FileNotFoundError:
        return
    with f:
        f.seek(start)
        pos, rest = start, b""
        while chunk := f.read(READ_CHUNK):
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for line in lines:
                pos += len(line) + 1
                yield pos, line


def next_seq_line(fd: int, pos: int, limit: int) -> tuple[int, int, int] | None:
    """(start, end, seq) of the first readable line that starts at or after `pos` and ends before `limit`."""
    start = pos if pos == 0 else find_newline(fd, pos - 1, limit)
    while start is not None and start < limit:
        end = find_newline(fd, start, limit)
        if end is None:
            return None
        line_seq = seq_of(os.pread(fd, end - 1 - start, start))
        if line_seq is not None:
            return start, end, line_seq
        start = end
    return None


def find_newline(fd: int, pos: int, limit: int) -> int | None:
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


def is_line_end(log: Path, offset: int, seq: int) -> bool:
    """Whether the log's line that ends just before `offset` is the one with `seq` (a snapshot
    is only good at a line end: the ledger and the lean reader both check it)."""
    if offset <= 0:
        return offset == 0 and seq == 0
    try:
        fd = os.open(log, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        if offset > os.fstat(fd).st_size or os.pread(fd, 1, offset - 1) != b"\n":
            return False
        return seq_of(line_before(fd, offset)[1]) == seq
    finally:
        os.close(fd)

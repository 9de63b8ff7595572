"""Named crash points: a process kills itself (SIGKILL) at a chosen step, so tests can crash it there.

`SWARMD_CRASH_AT=<point>` (or `<point>:<n>`, to die at the n-th time the point is reached) is read once,
at import. Unarmed, `crash_point` is one comparison; the points are named after the step they follow:

  mail.tmp_written   the message is in tmp/, not yet fsynced
  mail.tmp_synced    tmp/ file fsynced, the lock not yet taken
  mail.seq_taken     the sequence number is stored, the rename into new/ not done
  mail.renamed       the message is in new/, the directory not yet fsynced
  ledger.before_write  under the ledger lock, seq numbers chosen, nothing written
  ledger.torn_write    half of the lines' bytes written (a torn line), then death
  ledger.written       the lines written, not yet fsynced
"""

from __future__ import annotations

import os
import signal

ENV = "SWARMD_CRASH_AT"
POINTS = ("mail.tmp_written", "mail.tmp_synced", "mail.seq_taken", "mail.renamed",
          "ledger.before_write", "ledger.torn_write", "ledger.written")

_point: str | None = None
_at = 1
_hits = 0


def arm(spec: str | None) -> None:
    """Arm the crash point named by `spec` (`<point>` or `<point>:<n>`); None or "" disarms.

    Import calls this with $SWARMD_CRASH_AT; a forked test child may call it to re-arm itself.
    """
    global _point, _at, _hits
    _point, _at, _hits = None, 1, 0
    if not spec:
        return
    name, _, count = spec.partition(":")
    if name not in POINTS:
        raise ValueError(f"{ENV}: unknown crash point {name!r}; known: {', '.join(POINTS)}")
    if count and (not count.isdigit() or int(count) < 1):
        raise ValueError(f"{ENV}: {spec!r}: the count after ':' must be a positive integer")
    _point, _at = name, int(count or 1)


def crash_point(name: str) -> None:
    """Die here (SIGKILL, no cleanup, no flush) if this is the armed point and its count is reached."""
    if name == _point and _reached():
        _die()


def torn_write(name: str, fd: int, data: bytes) -> None:
    """At the armed point: write the first half of `data` to `fd`, then die, leaving a torn write."""
    if name == _point and _reached():
        os.write(fd, data[: max(1, len(data) // 2)])
        _die()


def _reached() -> bool:
    global _hits
    _hits += 1
    return _hits >= _at


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    while True:  # SIGKILL is delivered before kill() returns to a single-threaded process; never go on
        signal.pause()


arm(os.environ.get(ENV))

"""Say a repeated error once: the first time in full, then only how often it came back.

A daemon whose step fails the same way at every tick must not write the same traceback hundreds of times a
second (a log that grows at loop speed hides the first, useful line and fills the disk). `RepeatedErrors`
logs an error the first time it is seen, counts the repeats silently, and logs the count when the error
changes, when it clears, and at most once every `every` seconds while it goes on.
"""

import logging
import time
from collections.abc import Callable

REPORT_EVERY = 60.0  # seconds between "still failing" lines for an error that goes on


class RepeatedErrors:
    """Deduplicating error reporter for one loop. `report(key, text)` returns True when the error is new
    (the caller may then also record it elsewhere, such as the feed); `clear()` when the loop succeeds."""

    def __init__(self, log: logging.Logger, *, every: float = REPORT_EVERY,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._log, self._every, self._monotonic = log, every, monotonic
        self._key: str | None = None
        self._text = ""
        self._repeats = 0
        self._reported_at = 0.0

    def report(self, key: str, text: str, *, exc_info: bool = False) -> bool:
        """Log `text` if `key` differs from the error last reported; else count it. True if it was new."""
        now = self._monotonic()
        if key == self._key:
            self._repeats += 1
            if now - self._reported_at >= self._every:
                self._flush(still=True)
                self._reported_at = now
            return False
        self._flush(still=False)
        self._key, self._text, self._repeats, self._reported_at = key, text, 0, now
        self._log.error("%s", text, exc_info=exc_info)
        return True

    def clear(self) -> None:
        """The loop went through: say how often the last error repeated, and forget it."""
        self._flush(still=False)
        self._key, self._repeats = None, 0

    def _flush(self, *, still: bool) -> None:
        if self._key is not None and self._repeats:
            state = "still failing" if still else "repeated"
            self._log.error("%s (%s: %d more times)", self._text.splitlines()[0][:300], state, self._repeats)
            self._repeats = 0

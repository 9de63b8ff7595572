"""Unique ids that sort by creation time (ULID layout: 48-bit milliseconds + 80 random bits, base32)."""

import os
import time
from datetime import UTC, datetime

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U


def new_id(now_ms: int | None = None) -> str:
    """A 26-character id; ids made in later milliseconds sort after earlier ones."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def utcnow() -> datetime:
    return datetime.now(UTC)

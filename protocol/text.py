"""Text at the edges: decoding what the swarm reads from files, and making outside text (titles, mail,
file names, terminal output) safe to print."""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
BOM = "\ufeff"
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
# A terminal's escape sequences (CSI, OSC, two-byte ESC) and the other control characters but newline and tab.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]")


def inert(text: object, keep_newlines: bool = False) -> str:
    """`text` with every control character (ESC, CR, BEL, the C1 range...) written out as an escape such as
    `\\x1b`: shown, never sent, so data can neither move the cursor, recolour nor retitle a terminal.
    With `keep_newlines`, "\\n" stays a real line break (for text shown as a block, such as a description)."""
    pattern = _CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL
    return pattern.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def strip_escapes(text: str) -> str:
    """Terminal output as plain text: escape sequences and control characters removed (newlines and tabs
    kept, "\\r\\n" made "\\n"). A sequence cut off at the end of `text` is not recognised: strip whole lines."""
    return _ESCAPES.sub("", text.replace("\r\n", "\n"))


def normalize_text(text: str) -> str:
    """Text as the swarm reads it, whatever system wrote it: a leading UTF-8 BOM dropped, and CRLF and lone
    CR line ends made LF."""
    return text.removeprefix(BOM).replace("\r\n", "\n").replace("\r", "\n")


def decode_text(data: bytes, errors: str = "strict") -> str:
    """UTF-8 `data` as normalized text (see `normalize_text`); UnicodeDecodeError unless `errors` says how
    to treat bytes that are not UTF-8 (`"replace"`)."""
    return normalize_text(data.decode("utf-8", errors))


def read_text(path: Path, *, limit: int | None = None, errors: str = "strict") -> str:
    """The normalized text of the file at `path` (its first `limit` bytes if given).

    Raises OSError when the file cannot be read and UnicodeDecodeError when it is not UTF-8 (with the
    default `errors`)."""
    with open(path, "rb") as handle:
        data = handle.read() if limit is None else handle.read(limit)
    return decode_text(data, errors)


def non_utf8(value: Any, where: str = "") -> str | None:
    """Where in `value` (a str, or dicts and lists of them, keys included) the first string that cannot be
    written as UTF-8 is (a lone surrogate, such as a Latin-1 byte of argv decoded by Python); None if none.

    The answer names the place (`body.step`) and the offending character, for an error message."""
    for place, text in _strings(value, where):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            char = text[exc.start].encode("unicode_escape").decode("ascii")
            return f"{place or 'text'} is not UTF-8 text (it holds {char}, a lone surrogate or a byte that is not UTF-8)"
    return None


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            place = f"{where}.{key}" if where else str(key)
            if isinstance(key, str):
                yield (f"a key of {where}" if where else "a key"), key
            yield from _strings(item, place)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _strings(item, f"{where}.{i}" if where else str(i))

"""One agent's mailbox: a Maildir-style directory with `tmp/`, `new/`, `cur/` and `bad/`.

Delivery (`agentmail.delivery`) writes a complete file in `tmp/` and renames it into `new/<seq>-<id>.json`
under the mailbox's lock, so readers only ever see whole messages and names sort in delivery order.
Claiming renames a file from `new/` to `cur/`: of two racing consumers exactly one rename succeeds. A file
in `new/` that does not parse is moved to `bad/` with a one-line `<name>.reason` beside it; readers carry on.
"""

from __future__ import annotations

import itertools
import os
import re
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from protocol import InvalidMessage, InvalidName, Message, MessageType, parse_message

from agentmail.delivery import FILE_NAME_RE, READ_FLAGS, SEQ_WIDTH, SUBDIRS, Delivery, check_real_dir
from agentmail.errors import MailboxError

if TYPE_CHECKING:
    from agentmail.watch import ArrivalWatch

MESSAGE_ID_RE = re.compile(r"[0-9A-Za-z_-]{1,64}")
REASON_SUFFIX = ".reason"


@dataclass(frozen=True)
class Delivered:
    """A message as it lies in a mailbox: its sequence number, name and (on the file transport) current path."""

    seq: int
    name: str
    path: Path | None
    message: Message


def check_message_id(message_id: str) -> str:
    """Refuse a message id that could not be part of a mailbox file name (it is used to build paths)."""
    if not isinstance(message_id, str) or not MESSAGE_ID_RE.fullmatch(message_id):
        raise InvalidName(f"invalid message id {message_id!r}: use 1-64 characters of A-Z, a-z, 0-9, '_', '-'")
    return message_id


class Mailbox:
    """A handle on an existing mailbox directory; cheap to keep, safe to share between threads."""

    def __init__(self, path: Path, *, durable: bool = True, max_size: int = 1 << 20) -> None:
        self.path = path
        self.name = path.name
        self.durable = durable
        self.max_size = max_size
        self._new, self._cur, self._tmp, self._bad = (path / s for s in ("new", "cur", "tmp", "bad"))
        self._delivery = Delivery(str(path), durable=durable)
        for directory in (path, *(path / sub for sub in SUBDIRS)):
            check_real_dir(directory)

    def __repr__(self) -> str:
        return f"Mailbox({str(self.path)!r})"

    # -- delivery -------------------------------------------------------------------------------------

    def deliver(self, payload: bytes, message_id: str) -> str:
        """Deliver serialized, validated bytes; return the file name in `new/`.

        A file system refusal (disk full, read-only, no permission) is a MailboxError naming the mailbox:
        nothing was delivered and tmp/ is left clean.
        """
        try:
            return self._delivery.deliver(payload, message_id)
        except OSError as exc:
            raise MailboxError(f"cannot deliver {message_id} to {self.path}: {exc.strerror or exc}: "
                               "free some space or fix the home's permissions, then send again") from None

    # -- reading --------------------------------------------------------------------------------------

    def list(self, limit: int | None = None) -> list[Delivered]:
        """Unread messages (in `new/`) in sequence order, at most `limit` of them (all with None); malformed
        files are quarantined on the way. Only the messages returned are read: a long backlog costs one
        directory listing, not a parse of every message in it."""
        found: list[Delivered] = []
        for name in sorted(os.listdir(self._new)):
            if limit is not None and len(found) >= limit:
                break
            if (delivered := self._load(self._new, name, quarantine=True)) is not None:
                found.append(delivered)
        return found

    def scan(self, seen: set[str]) -> list[Delivered]:
        """Unread messages whose names are not in `seen`, in order; `seen` is updated to match `new/`."""
        names = sorted(os.listdir(self._new))
        seen.intersection_update(names)
        found = []
        for name in names:
            if name not in seen:
                seen.add(name)
                if (delivered := self._load(self._new, name, quarantine=True)) is not None:
                    found.append(delivered)
        return found

    def claim(self, message_id: str | None = None) -> Delivered | None:
        """Move one unread message to `cur/` and return it: the oldest, or the one with `message_id`.

        Returns None when there is nothing (left) to claim: another consumer may have won the race.
        """
        if message_id is not None:
            name = self._find(self._new, check_message_id(message_id))
            candidates = [] if name is None else [name]
        else:
            candidates = sorted(os.listdir(self._new))
        for name in candidates:
            delivered = self._load(self._new, name, quarantine=True)
            if delivered is not None and (claimed := self.claim_loaded(delivered)) is not None:
                return claimed
        return None

    def claim_loaded(self, delivered: Delivered) -> Delivered | None:
        """Claim a message already read from `new/`; None if another consumer claimed it first."""
        target = self._cur / delivered.name
        try:
            os.rename(self._new / delivered.name, target)
        except FileNotFoundError:
            return None
        return Delivered(delivered.seq, delivered.name, target, delivered.message)

    def set_aside(self, delivered: Delivered, reason: str) -> None:
        """Move an unread message to `bad/` with `reason` beside it (a message its reader cannot handle).

        It is kept, never dropped: `agentmail bad AGENT` lists it with the reason. Nothing happens if another
        consumer claimed it meanwhile.
        """
        self._quarantine(delivered.name, reason)

    def read_claimed(self, message_id: str) -> Delivered | None:
        """A message already claimed (in `cur/`), or None if there is none with that id."""
        name = self._find(self._cur, check_message_id(message_id))
        return None if name is None else self._load(self._cur, name, quarantine=False)

    def bad(self) -> list[tuple[str, str]]:
        """Quarantined files and the reason each was set aside."""
        names = sorted(os.listdir(self._bad))
        result = []
        for name in names:
            if name.endswith(REASON_SUFFIX):
                continue
            try:
                fd = os.open(self._bad / (name + REASON_SUFFIX), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                with os.fdopen(fd, "rb") as handle:
                    reason = handle.read(4096).decode(errors="replace").strip()
            except FileNotFoundError:
                reason = "(no reason recorded)"
            except OSError as exc:
                reason = f"(reason file unreadable: {exc.strerror})"
            result.append((name, reason))
        return result

    def _find(self, directory: Path, message_id: str) -> str | None:
        suffix = f"-{message_id}.json"
        return next((n for n in sorted(os.listdir(directory)) if n.endswith(suffix)), None)

    def _load(self, directory: Path, name: str, *, quarantine: bool) -> Delivered | None:
        """Read and validate one file; None if it vanished or (with `quarantine`) was set aside as bad."""
        path = directory / name
        try:
            match = FILE_NAME_RE.fullmatch(name)
            if match is None:
                raise InvalidMessage(f"file name {name!r} is not <{SEQ_WIDTH}-digit seq>-<id>.json")
            message = parse_message(self._read(path))
            if message.id != match[2]:
                raise InvalidMessage(f"message id {message.id!r} does not match the file name")
        except FileNotFoundError:
            return None
        except (InvalidMessage, OSError) as exc:
            if not quarantine:
                raise MailboxError(f"{path}: {exc}") from None
            self._quarantine(name, str(exc))
            return None
        return Delivered(int(match[1]), name, path, message)

    def _read(self, path: Path) -> bytes:
        fd = os.open(path, READ_FLAGS)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise InvalidMessage("not a regular file")
            data = handle.read(self.max_size + 1)
        if len(data) > self.max_size:
            raise InvalidMessage(f"larger than the size limit of {self.max_size} bytes")
        return data

    def _quarantine(self, name: str, reason: str) -> None:
        """Move `new/<name>` to `bad/` (never over an earlier bad file) and write its reason beside it."""
        target = name
        for n in itertools.count(1):
            if not os.path.lexists(self._bad / target) and not target.endswith(REASON_SUFFIX):
                break
            target = f"{name}.{n}"
        try:
            os.rename(self._new / name, self._bad / target)
        except FileNotFoundError:
            return  # claimed or quarantined by someone else meanwhile
        line = " ".join(reason.split()) + "\n"
        fd = os.open(self._bad / (target + REASON_SUFFIX), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(line)

    # -- waiting --------------------------------------------------------------------------------------

    def on_arrival(self, callback: Callable[[], None], *, polling: bool = False) -> ArrivalWatch:
        """Call `callback` (from a watch thread) whenever a file lands in `new/`; `.stop()` it after.

        Arrivals are seen from file events and from a rescan on a period (`agentmail.watch.RESCAN_PERIOD`),
        for file systems that raise no event; with `polling`, or when no event can be had, from rescans
        alone. The callback should only signal (set an Event, put on a Queue): the owner then calls list()
        or claim() on its own thread.
        """
        from agentmail.watch import ArrivalWatch

        return ArrivalWatch(self._new, callback, polling=polling)

    def watch(self, *, claim: bool = False, polling: bool = False, stop: threading.Event | None = None,
              timeout: float | None = None) -> Iterator[Delivered]:
        """Yield each unread message once, in order, starting with those already waiting.

        Runs until `stop` is set or `timeout` seconds have passed in total (forever if neither is given).
        With `claim`, each message is claimed first and those another consumer won are skipped.
        """
        from agentmail.watch import watch_mailbox

        return watch_mailbox(self, claim=claim, polling=polling, stop=stop, timeout=timeout)

    def wait(self, *, types: set[MessageType] | None = None, task: str | None = None,
             timeout: float | None = None, claim: bool = True) -> Delivered | None:
        """Block until a message of one of `types` (and about `task`) is unread; claim and return it.

        Other messages stay unread. Returns None on timeout.
        """
        from agentmail.transport import wait_in

        return wait_in(self, types=types, task=task, timeout=timeout, claim=claim)

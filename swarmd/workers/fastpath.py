"""A worker's mail before its agent starts, with the standard library alone: its assignment and its reports.

Every worker pane starts a Python process; importing the models (pydantic) costs it a third of a second of
CPU, and fifty panes at once on two cores wait seconds for it. So the wrapper claims its TASK_ASSIGN with
`json` and writes ACCEPTED, DONE and FAILED itself, byte for byte as `PostOffice.send` writes them
(`tests/test_worker_fastpath.py` compares the two), delivered by `agentmail.delivery` under the mailbox's
rules (tmp/, fsync, lock, sequence number, rename into new/). The supervisor validates each message with
the models when it reads it, as it does every message. Anything this path cannot vouch for (no mailbox,
text that is not UTF-8, a message of another shape) is left to the full path: each function says None or
False and the caller falls back to `agentmail`'s models.
"""

import json
import os
import stat
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from agentmail.delivery import FILE_NAME_RE, READ_FLAGS, Delivery, check_real_dir
from agentmail.errors import MailError
from protocol.ids import new_id

PROTOCOL_VERSION = 1  # protocol.messages.PROTOCOL_VERSION
MAX_SIZE = 1 << 20  # PostOffice's default size limit, bytes
SUPERVISOR = "supervisor"
# Each report's body fields after `task`, in the model's order, with their defaults (protocol.messages'
# Accepted, Done and Failed; None is left out, as `exclude_none` does).
BODY_LAYOUTS: dict[str, tuple[tuple[str, Any], ...]] = {
    "ACCEPTED": (("title", ""), ("started_at", None)),
    "DONE": (("commit", ""), ("files", []), ("tests", None), ("lint", None), ("build", None), ("summary", "")),
    "FAILED": (("failure", "ERROR"), ("reason", ""), ("attempts", None), ("partial_commit", ""), ("files", []),
               ("recommendation", "")),
}


def uses_files(home: Path) -> bool:
    """Whether the home's mail travels as files: $SWARM_TRANSPORT as the supervisor set it ("files" or
    "nats"), else swarm.toml's `transport` (missing or "files"); an unreadable swarm.toml says no (the full
    path then reads it and names what is wrong)."""
    chosen = os.environ.get("SWARM_TRANSPORT")
    if chosen:
        return chosen == "files"
    try:
        with open(f"{home}/swarm.toml", "rb") as handle:
            return tomllib.load(handle).get("transport", "files") == "files"
    except FileNotFoundError:
        return True
    except (OSError, ValueError, RecursionError):
        return False


class Assignment(NamedTuple):
    """What the wrapper needs of a TASK_ASSIGN: the title it echoes in ACCEPTED and the description a
    --script worker runs."""

    title: str
    description: str


def take_assignment(mailbox: Path, task: str) -> Assignment | None:
    """Claim the TASK_ASSIGN about `task` waiting in `mailbox` (renamed from new/ into cur/, as `Mailbox.claim`
    does) and return it; None when there is none this reader can vouch for (no mailbox, no such message, or
    one whose fields are not plain text): the caller then reads the mailbox with the models. Other messages
    are left unread and untouched."""
    new, cur = f"{mailbox}/new", f"{mailbox}/cur"
    try:
        for directory in (mailbox, new, cur):
            check_real_dir(directory)
        names = sorted(os.listdir(new))
    except (OSError, MailError):
        return None
    for name in names:
        match = FILE_NAME_RE.fullmatch(name)
        message = _read_json(f"{new}/{name}") if match else None
        if not _is_assignment(message, match[2] if match else "", task):
            continue
        body = message["body"]  # type: ignore[index]
        title, description = body.get("title", ""), body.get("description", "")
        if not (_is_text(title) and _is_text(description)):
            return None
        try:
            os.rename(f"{new}/{name}", f"{cur}/{name}")
        except FileNotFoundError:
            continue  # another consumer claimed it first
        return Assignment(title, description)
    return None


class Reports:
    """Writes one worker's reports about one task into the supervisor's mailbox of the home at `home`."""

    def __init__(self, home: Path, agent: str, task: str, *, durable: bool) -> None:
        self.agent, self.task = agent, task
        self.mailbox = f"{home}/mail/{SUPERVISOR}"
        self._delivery = Delivery(self.mailbox, durable=durable)

    def send(self, kind: str, **fields: Any) -> bool:
        """Deliver a `kind` report (ACCEPTED, DONE or FAILED) with body `fields` (the rest take their defaults);
        False, with nothing delivered, when this path cannot: no supervisor mailbox, text that is not UTF-8,
        over the size limit. Raises OSError when the file system refuses the delivery."""
        message_id = new_id()
        try:
            payload = encode(kind, self.agent, self.task, fields, message_id=message_id, ts=datetime.now(UTC),
                             origin=_origin())
        except UnicodeEncodeError:
            return False
        try:
            for directory in (self.mailbox, *(f"{self.mailbox}/{sub}" for sub in ("tmp", "new"))):
                check_real_dir(directory)
        except MailError:
            return False
        if len(payload) > MAX_SIZE:
            return False
        self._delivery.deliver(payload, message_id)
        return True


def encode(kind: str, agent: str, task: str, fields: dict[str, Any], *, message_id: str, ts: datetime,
           origin: dict[str, Any]) -> bytes:
    """The JSON bytes `PostOffice.send` writes for this report from `agent` to the supervisor, in thread `task`.

    Datetimes (`ts`, a body's `started_at`) must be timezone-aware; they are written in UTC. KeyError for
    a kind without a layout, TypeError for a field it does not have; UnicodeEncodeError for text that is
    not UTF-8 (a lone surrogate)."""
    layout = BODY_LAYOUTS[kind]
    unknown = set(fields) - {field for field, _ in layout}
    if unknown:
        raise TypeError(f"{kind} has no field {sorted(unknown)[0]!r}")
    body: dict[str, Any] = {"task": task}
    for field, default in layout:
        value = fields.get(field, default)
        if value is not None:
            body[field] = _iso(value) if isinstance(value, datetime) else value
    message = {"v": PROTOCOL_VERSION, "id": message_id, "ts": _iso(ts), "from": agent, "to": [SUPERVISOR],
               "thread": task, "type": kind, "ack_required": False, "body": body, "origin": origin}
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()


def _origin() -> dict[str, Any]:
    """This process as `PostOffice.send` stamps it (the host is the kernel's node name, as gethostname reads it)."""
    return {"pid": os.getpid(), "uid": os.getuid(), "host": os.uname().nodename}


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, microseconds only when there are some: pydantic's form."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _is_assignment(message: object, file_id: str, task: str) -> bool:
    """Whether `message` (parsed JSON) is a TASK_ASSIGN envelope about `task` whose id is its file name's."""
    if not isinstance(message, dict) or message.get("type") != "TASK_ASSIGN" or message.get("id") != file_id:
        return False
    body = message.get("body")
    return (message.get("v") == PROTOCOL_VERSION and isinstance(body, dict)
            and (message.get("thread") or body.get("task")) == task)


def _is_text(value: object) -> bool:
    """A str that can be written as UTF-8 (JSON's `\\ud800` escapes give lone surrogates that cannot)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _read_json(path: str) -> object:
    """The parsed JSON of the regular file at `path` (at most MAX_SIZE bytes); None if it is anything else."""
    try:
        fd = os.open(path, READ_FLAGS)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            data = handle.read(MAX_SIZE + 1)
    except OSError:
        return None
    try:
        return json.loads(data.removeprefix(b"\xef\xbb\xbf")) if len(data) <= MAX_SIZE else None
    except ValueError:
        return None

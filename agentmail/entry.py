"""The `agentmail` program's entry point: `agentmail send` of plain text fields answers without click or pydantic;
every other command line goes to the click app (`agentmail.cli`).

A send is taken here only when this path can vouch that the models would accept the message as it is and
write it as it writes it: names and task ids checked as `protocol.names` checks them, text fields only
(typed as the models type a plain `str` field given on the command line), every recipient an existing
mailbox of the home. The message is written byte for byte as `PostOffice.send` writes it (a test compares
the two for every message type) and delivered by `agentmail.delivery`, as every message is; its readers
validate it with the models, as they validate every message. Anything else (a body file, a role, a list
or number field, a name the models refuse, an unknown recipient) goes to the app, which then says what it
says: its errors stay its own.
"""

import json
import os
import stat
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentmail.delivery import SUBDIRS, Delivery
from agentmail.locate import explicit_home, find_home_upward
from agentmail.pipes import write_out
from protocol.errors import InvalidName
from protocol.ids import new_id
from protocol.names import validate_agent_name, validate_task_id

PROTOCOL_VERSION = 1  # protocol.messages.PROTOCOL_VERSION
MAX_SIZE = 1 << 20  # PostOffice's default size limit, bytes
ACK_ALWAYS = frozenset({"HELP_REQUEST", "OFFERING_READY"})  # protocol.messages.ACK_ALWAYS
REQUIRED = "<required>"
# Each body model of protocol.messages: its fields in order, each with its default (as JSON; REQUIRED for none)
# and, for a plain text field, the least length it takes (None for any other field; `task` is --task's).
BODY_LAYOUTS: dict[str, tuple[tuple[str, Any, int | None], ...]] = {
    "TASK_ASSIGN": (("task", REQUIRED, None), ("title", "", 0), ("description", "", 0), ("attempt", 1, None),
                    ("max_attempts", 3, None), ("prompt_file", None, None), ("retry_context", "", 0),
                    ("checkpoint", "", 0)),
    "ACCEPTED": (("task", REQUIRED, None), ("title", "", 0), ("started_at", None, None)),
    "PROGRESS": (("task", REQUIRED, None), ("step", "", 0), ("status", "", 0), ("context_pct", None, None),
                 ("files", [], None)),
    "HELP_REQUEST": (("task", REQUIRED, None), ("kind", "STUCK", None), ("problem", "", 0), ("tried", "", 0),
                     ("files", [], None), ("question", "", 0)),
    "HELP_RESPONSE": (("task", REQUIRED, None), ("answer", "", 0), ("request_id", None, None)),
    "OFFERING_READY": (("task", REQUIRED, None), ("commit", "", 0), ("files", [], None), ("tests", None, None),
                       ("lint", None, None), ("build", None, None), ("summary", "", 0)),
    "DONE": (("task", REQUIRED, None), ("commit", "", 0), ("files", [], None), ("tests", None, None),
             ("lint", None, None), ("build", None, None), ("summary", "", 0)),
    "FAILED": (("task", REQUIRED, None), ("failure", "ERROR", None), ("reason", "", 0), ("attempts", None, None),
               ("partial_commit", "", 0), ("files", [], None), ("recommendation", "", 0)),
    "CHECKPOINT": (("task", REQUIRED, None), ("reason", "MANUAL", None), ("commit", "", 0), ("done", "", 0),
                   ("remaining", "", 0), ("next_steps", "", 0)),
    "SPAWN_REQUEST": (("task", None, None), ("profile", None, None), ("count", 1, None), ("reason", "", 0)),
    "SPAWN_ACK": (("request_id", REQUIRED, 0), ("accepted", True, None), ("agents", [], None), ("reason", "", 0)),
    "ACK": (("message_id", REQUIRED, 1),),
    "STEER": (("text", REQUIRED, 1), ("task", None, None)),
    "SHUTDOWN": (("reason", "", 0),),
    "AGENT_STATE": (("task", None, None), ("state", REQUIRED, None), ("detail", "", 0), ("resets_at", None, None),
                    ("session_id", "", 0), ("usage", {}, None)),
}
_VALUED = {"--from": "sender", "--to": "to", "--type": "kind", "--task": "task", "--field": "fields",
           "--reply-to": "reply_to", "--home": "home"}
_REPEATABLE = frozenset({"to", "fields"})


class Unsure(Exception):
    """This path cannot vouch for the app's answer: the app answers."""


def main() -> None:
    """Send on the lean path if it can, else run the click app."""
    if not answer(sys.argv[1:]):
        from agentmail.cli import main as app

        app()


def answer(args: list[str]) -> bool:
    """Send and print as `agentmail ARGS` would if this path can vouch for it; False (nothing done) if not.
    A file system refusal during delivery is said as the app says it (one line, exit 2)."""
    options = parse(args)
    if options is None:
        return False
    try:
        mailboxes, payload, message_id = prepare(options)
    except (Unsure, InvalidName, UnicodeEncodeError, OSError):
        return False
    for mailbox in mailboxes:
        try:
            Delivery(mailbox, durable=True).deliver(payload, message_id)
        except OSError as exc:  # said as Mailbox.deliver and the app say it
            from protocol.text import inert

            said = (f"cannot deliver {message_id} to {mailbox}: {exc.strerror or exc}: "
                    "free some space or fix the home's permissions, then send again")
            sys.stderr.write(f"agentmail: error: {inert(said)}\n")
            sys.exit(2)
    write_out((payload.decode() if options["json"] else message_id).encode() + b"\n")
    return True


def parse(args: list[str]) -> dict[str, Any] | None:
    """The options of `send` as this path takes them; None for any other command line."""
    if not args or args[0] != "send":
        return None
    options: dict[str, Any] = {"json": False, "ack_required": False, "to": [], "fields": []}
    rest = iter(args[1:])
    for arg in rest:
        if arg in ("--json", "--ack-required"):
            options[arg[2:].replace("-", "_")] = True
            continue
        name, eq, value = arg.partition("=")
        key = _VALUED.get(name)
        if key is None:
            return None
        value = value if eq else next(rest, "")
        if not value or value.startswith("-"):
            return None
        if key in _REPEATABLE:
            options[key].append(value)
        elif key in options:
            return None
        else:
            options[key] = value
    if not options["to"] or "sender" not in options or options.get("kind", "").upper() not in BODY_LAYOUTS:
        return None
    return options


def prepare(options: dict[str, Any]) -> tuple[list[Path], bytes, str]:
    """(the recipients' mailboxes, the message's bytes, its id) for a send this path can vouch for."""
    kind, task = options["kind"].upper(), options.get("task")
    sender = validate_agent_name(options["sender"])
    for recipient in options["to"]:
        validate_agent_name(recipient)  # `role:` fans out: the app's to do
    if task is not None:
        validate_task_id(task)
    given = dict(_text_field(kind, field) for field in options["fields"])
    if task is not None:
        if not any(name == "task" for name, _, _ in BODY_LAYOUTS[kind]):
            raise Unsure(f"{kind} has no task field: the app keeps it as an extra one")
        given["task"] = task
    body = {}
    for name, default, _ in BODY_LAYOUTS[kind]:
        value = given.get(name, default)
        if value is REQUIRED:
            raise Unsure(f"{kind} needs {name}")
        if value is not None:
            body[name] = value
    message_id = new_id()
    envelope = {"v": PROTOCOL_VERSION, "id": message_id, "ts": _iso(datetime.now(UTC)), "from": sender,
                "to": list(options["to"]), "thread": task, "type": kind,
                "ack_required": options["ack_required"] or kind in ACK_ALWAYS, "reply_to": options.get("reply_to"),
                "body": body, "origin": {"pid": os.getpid(), "uid": os.getuid(), "host": os.uname().nodename}}
    payload = json.dumps({k: v for k, v in envelope.items() if v is not None}, ensure_ascii=False,
                         separators=(",", ":")).encode()
    if len(payload) > MAX_SIZE:
        raise Unsure("over the size limit")
    return _mailboxes(options.get("home"), options["to"]), payload, message_id


def _text_field(kind: str, field: str) -> tuple[str, str]:
    """`key=value` for a plain text field of `kind`'s body, typed as the app types it: a JSON string literal is
    unquoted, any other value kept as written; Unsure for any other field or a value it would refuse."""
    key, sep, raw = field.partition("=")
    least = next((least for name, _, least in BODY_LAYOUTS[kind] if name == key), None)
    if not sep or least is None:
        raise Unsure(f"{key} is not a text field of {kind}")
    try:
        candidates = [json.loads(raw), raw]
    except (ValueError, RecursionError):
        candidates = [raw]
    for value in candidates:
        if isinstance(value, str) and len(value) >= least:
            value.encode()  # UnicodeEncodeError for text that is not UTF-8: the app refuses it
            return key, value
    raise Unsure(f"{key}: a value the app refuses")


def _mailboxes(home: str | None, recipients: list[str]) -> list[Path]:
    """Each recipient's mailbox (once), as the app would deliver to it: the home is there, `mail/` and every
    mailbox with its sub-directories are real directories; Unsure otherwise (the app creates or refuses)."""
    root = explicit_home(home) or find_home_upward()
    if root is None or not root.is_dir():
        raise Unsure("no home")
    found = []
    for agent in dict.fromkeys(recipients):
        for path in (root / "mail", root / "mail" / agent, *(root / "mail" / agent / sub for sub in SUBDIRS)):
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                raise Unsure(f"{path} is not a directory")
        found.append(root / "mail" / agent)
    return found


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, microseconds only when there are some: pydantic's form."""
    return moment.isoformat().replace("+00:00", "Z")

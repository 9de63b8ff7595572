"""Validation of names that come from outside and end up in paths.

An agent name becomes a mailbox directory and a tmux session name; a task id becomes part of file names
and prompt paths. Both are checked before any path is built from them. This module needs only the standard
library (a worker's start-up path checks names with it); the pydantic field types built on these checks are
in `protocol.base`.
"""

import re

from protocol.errors import InvalidName

AGENT_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
TASK_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
LABEL_RE = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,63}")
ROLE_PREFIX = "role:"


def printable(value: str) -> str:
    """`value` as an error message may show it: escapes for what is not printable ASCII, at most 80 characters."""
    return value.encode("unicode_escape").decode("ascii")[:80]


def validate_agent_name(name: str) -> str:
    """Return `name` if it is a safe agent name, else raise InvalidName."""
    if not isinstance(name, str) or not AGENT_NAME_RE.fullmatch(name) or name in {".", ".."}:
        raise InvalidName(
            f"invalid agent name {printable(str(name))!r}: use 1-64 characters of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit"
        )
    return name


def validate_task_id(task_id: str) -> str:
    """Return `task_id` if it is a safe task id, else raise InvalidName."""
    if not isinstance(task_id, str) or not TASK_ID_RE.fullmatch(task_id):
        raise InvalidName(
            f"invalid task id {printable(str(task_id))!r}: use 1-128 characters of A-Z, a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit"
        )
    return task_id


def validate_label(label: str) -> str:
    """Return `label` if it can be a host label (what a machine offers, what a task asks for), else raise
    InvalidName."""
    if not isinstance(label, str) or not LABEL_RE.fullmatch(label):
        raise InvalidName(f"invalid label {printable(str(label))!r}: use 1-64 characters of a-z, 0-9, '.', ':', "
                          "'_', '-', starting with a letter or digit")
    return label


def validate_recipient(recipient: str) -> str:
    """An agent name, or `role:<role>` for a broadcast to every member of a role."""
    if isinstance(recipient, str) and recipient.startswith(ROLE_PREFIX):
        validate_agent_name(recipient[len(ROLE_PREFIX):])
        return recipient
    return validate_agent_name(recipient)

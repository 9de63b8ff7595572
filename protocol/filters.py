"""Filters over lists of messages: what a supervisor or an operator asks of a mailbox.

Plain functions over any iterable of Message; each returns a list in the order it was given.
"""

from collections.abc import Iterable

from protocol.messages import Message, MessageType

SUCCESS_TYPES = frozenset({MessageType.DONE, MessageType.OFFERING_READY})
FAILURE_TYPES = frozenset({MessageType.FAILED})
COMPLETION_TYPES = SUCCESS_TYPES | FAILURE_TYPES


def by_type(msgs: Iterable[Message], *types: MessageType | str) -> list[Message]:
    """Messages of any of `types` (members or their names, e.g. "DONE")."""
    wanted = {MessageType(t) for t in types}
    return [m for m in msgs if m.type in wanted]


def completions(msgs: Iterable[Message]) -> list[Message]:
    """Messages that end an attempt: DONE, OFFERING_READY or FAILED."""
    return by_type(msgs, *COMPLETION_TYPES)


def successes(msgs: Iterable[Message]) -> list[Message]:
    """DONE and OFFERING_READY messages."""
    return by_type(msgs, *SUCCESS_TYPES)


def failures(msgs: Iterable[Message]) -> list[Message]:
    """FAILED messages."""
    return by_type(msgs, *FAILURE_TYPES)


def by_task(msgs: Iterable[Message], task_id: str) -> list[Message]:
    """Messages about `task_id`: in its thread or naming it in the body."""
    return [m for m in msgs if task_id in (m.thread, getattr(m.body, "task", None))]


def pending_acks(msgs: Iterable[Message]) -> list[Message]:
    """Messages that require an ACK and have none among `msgs` (an ACK names them in body.message_id)."""
    msgs = list(msgs)
    acked = {m.body.message_id for m in msgs if m.type == MessageType.ACK}
    return [m for m in msgs if m.ack_required and m.type != MessageType.ACK and m.id not in acked]

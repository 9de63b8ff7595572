"""The typed vocabulary of swarmd: Agent Mail messages, tasks, ledger events and registry entries."""

from protocol.agent import AgentStatus, RegistryEntry
from protocol.errors import InvalidMessage, InvalidName, InvalidTransition, ProtocolError
from protocol.event import Event, EventType
from protocol.ids import new_id, utcnow
from protocol.messages import (
    BODY_MODELS,
    PROTOCOL_VERSION,
    CheckpointReason,
    CheckResult,
    FailureType,
    HelpKind,
    Message,
    MessageType,
    make_message,
    parse_message,
)
from protocol.markdown import ParsedMail, parse_markdown, to_markdown
from protocol.names import validate_agent_name, validate_recipient, validate_task_id
from protocol.task import (
    Attempt,
    AttemptOutcome,
    Check,
    Note,
    NoteKind,
    Task,
    TaskStatus,
    ValidationSpec,
    check_transition,
)

__all__ = [
    "AgentStatus", "Attempt", "AttemptOutcome", "BODY_MODELS", "Check", "CheckResult", "CheckpointReason",
    "Event", "EventType", "FailureType", "HelpKind", "InvalidMessage", "InvalidName", "InvalidTransition",
    "Message", "MessageType", "Note", "NoteKind", "ParsedMail", "parse_markdown", "to_markdown", "PROTOCOL_VERSION", "ProtocolError", "RegistryEntry", "Task",
    "TaskStatus", "ValidationSpec", "check_transition", "make_message", "new_id", "parse_message", "utcnow",
    "validate_agent_name", "validate_recipient", "validate_task_id",
]

"""The typed vocabulary of swarmd: Agent Mail messages, tasks, ledger events and registry entries.

Names are imported on first use (PEP 562's module `__getattr__`), so `import protocol.names` or
`protocol.ids` costs only that module: a worker's start-up path and a short command never load pydantic
unless they build a model.
"""

import importlib
from typing import TYPE_CHECKING, Any

_HOMES = {
    "protocol.agent": ("AgentStatus", "RegistryEntry"),
    "protocol.errors": ("InvalidMessage", "InvalidName", "InvalidTransition", "ProtocolError"),
    "protocol.event": ("Event", "EventType"),
    "protocol.ids": ("new_id", "utcnow"),
    "protocol.messages": ("BODY_MODELS", "PROTOCOL_VERSION", "CheckpointReason", "CheckResult", "FailureType",
                          "HelpKind", "Message", "MessageType", "make_message", "parse_message"),
    "protocol.markdown": ("ParsedMail", "parse_markdown", "to_markdown"),
    "protocol.names": ("validate_agent_name", "validate_recipient", "validate_task_id"),
    "protocol.task": ("Attempt", "AttemptOutcome", "Check", "Note", "NoteKind", "Task", "TaskStatus",
                      "ValidationSpec", "check_transition"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    """Import the module that holds `name` on first use; AttributeError for a name the package lacks."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'protocol' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from protocol.agent import AgentStatus, RegistryEntry
    from protocol.errors import InvalidMessage, InvalidName, InvalidTransition, ProtocolError
    from protocol.event import Event, EventType
    from protocol.ids import new_id, utcnow
    from protocol.markdown import ParsedMail, parse_markdown, to_markdown
    from protocol.messages import (BODY_MODELS, PROTOCOL_VERSION, CheckpointReason, CheckResult, FailureType,
                                   HelpKind, Message, MessageType, make_message, parse_message)
    from protocol.names import validate_agent_name, validate_recipient, validate_task_id
    from protocol.task import (Attempt, AttemptOutcome, Check, Note, NoteKind, Task, TaskStatus, ValidationSpec,
                               check_transition)

"""The Agent Mail envelope and the typed body of every message type.

A message is a JSON object: the envelope fields below and a `body` whose model is chosen by `type`.
Bodies accept extra fields (agents may say more than we model) and keep them.
"""

import codecs
import functools
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from protocol.base import AgentName, Model, Recipient, TaskId
from protocol.errors import InvalidMessage
from protocol.ids import new_id, utcnow
from protocol.text import BOM, non_utf8

PROTOCOL_VERSION = 1


class MessageType(StrEnum):
    TASK_ASSIGN = "TASK_ASSIGN"
    ACCEPTED = "ACCEPTED"
    PROGRESS = "PROGRESS"
    HELP_REQUEST = "HELP_REQUEST"
    HELP_RESPONSE = "HELP_RESPONSE"
    OFFERING_READY = "OFFERING_READY"
    DONE = "DONE"
    FAILED = "FAILED"
    CHECKPOINT = "CHECKPOINT"
    SPAWN_REQUEST = "SPAWN_REQUEST"
    SPAWN_ACK = "SPAWN_ACK"
    ACK = "ACK"
    STEER = "STEER"
    SHUTDOWN = "SHUTDOWN"
    AGENT_STATE = "AGENT_STATE"


class HelpKind(StrEnum):
    STUCK = "STUCK"
    SPEC_UNCLEAR = "SPEC_UNCLEAR"
    BLOCKED = "BLOCKED"
    TECHNICAL = "TECHNICAL"


class FailureType(StrEnum):
    TESTS_FAIL = "TESTS_FAIL"
    BUILD_FAIL = "BUILD_FAIL"
    SPEC_IMPOSSIBLE = "SPEC_IMPOSSIBLE"
    CONTEXT_HIGH = "CONTEXT_HIGH"
    TIMEOUT = "TIMEOUT"
    ERROR = "ERROR"
    LAUNCH_ERROR = "LAUNCH_ERROR"  # the agent could not be started at all: a setup mistake, not the task's


class CheckpointReason(StrEnum):
    CONTEXT_HIGH = "CONTEXT_HIGH"
    MANUAL = "MANUAL"
    TIMEOUT = "TIMEOUT"


class CheckResult(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"


class Body(Model):
    model_config = ConfigDict(extra="allow")


class TaskBody(Body):
    task: TaskId


class TaskAssign(TaskBody):
    title: str = ""
    description: str = ""
    attempt: int = Field(default=1, ge=1)
    max_attempts: int = Field(default=3, ge=1)
    prompt_file: str | None = None
    retry_context: str = ""
    checkpoint: str = ""


class Accepted(TaskBody):
    title: str = ""
    started_at: datetime | None = None


class Progress(TaskBody):
    step: str = ""
    status: str = ""
    context_pct: float | None = Field(default=None, ge=0, le=100)
    files: list[str] = []


class HelpRequest(TaskBody):
    kind: HelpKind = HelpKind.STUCK
    problem: str = ""
    tried: str = ""
    files: list[str] = []
    question: str = ""


class HelpResponse(TaskBody):
    answer: str = ""
    request_id: str | None = None


class Done(TaskBody):
    commit: str = ""
    files: list[str] = []
    tests: CheckResult | None = None
    lint: CheckResult | None = None
    build: CheckResult | None = None
    summary: str = ""


class OfferingReady(Done):
    pass


class Failed(TaskBody):
    failure: FailureType = FailureType.ERROR
    reason: str = ""
    attempts: int | None = Field(default=None, ge=0)
    partial_commit: str = ""
    files: list[str] = []
    recommendation: str = ""


class Checkpoint(TaskBody):
    reason: CheckpointReason = CheckpointReason.MANUAL
    commit: str = ""
    done: str = ""
    remaining: str = ""
    next_steps: str = ""


class SpawnRequest(Body):
    task: TaskId | None = None
    profile: str | None = None
    count: int = Field(default=1, ge=1, le=64)
    reason: str = ""


class SpawnAck(Body):
    request_id: str
    accepted: bool = True
    agents: list[str] = []
    reason: str = ""


class Ack(Body):
    message_id: str = Field(min_length=1)


class Steer(Body):
    text: str = Field(min_length=1)
    task: TaskId | None = None


class Shutdown(Body):
    reason: str = ""


class AgentRunState(StrEnum):
    """What a worker's agent is doing, as its lifecycle hooks (or its pane) tell."""
    STARTING = "starting"
    WORKING = "working"
    IDLE = "idle"
    NEEDS_INPUT = "needs_input"
    RATE_LIMITED = "rate_limited"
    EXITED = "exited"


class AgentState(Body):
    """A worker's agent changed state (sent by its hooks): `detail` is a dialog's text or a failure; `usage` is
    the agent's own running total for its session (input/output/cache tokens, `cost_usd` when it records one)."""
    task: TaskId | None = None
    state: AgentRunState
    detail: str = ""
    resets_at: datetime | None = None
    session_id: str = ""
    usage: dict[str, float] = {}


BODY_MODELS: dict[MessageType, type[Body]] = {
    MessageType.TASK_ASSIGN: TaskAssign,
    MessageType.ACCEPTED: Accepted,
    MessageType.PROGRESS: Progress,
    MessageType.HELP_REQUEST: HelpRequest,
    MessageType.HELP_RESPONSE: HelpResponse,
    MessageType.OFFERING_READY: OfferingReady,
    MessageType.DONE: Done,
    MessageType.FAILED: Failed,
    MessageType.CHECKPOINT: Checkpoint,
    MessageType.SPAWN_REQUEST: SpawnRequest,
    MessageType.SPAWN_ACK: SpawnAck,
    MessageType.ACK: Ack,
    MessageType.STEER: Steer,
    MessageType.SHUTDOWN: Shutdown,
    MessageType.AGENT_STATE: AgentState,
}

# Types whose sender waits for an ACK whether or not it says so.
ACK_ALWAYS = frozenset({MessageType.HELP_REQUEST, MessageType.OFFERING_READY})


class Origin(Model):
    """Who really wrote the file, stamped by the transport from the OS, not from what the sender says."""

    pid: int
    uid: int
    host: str = ""


class Message(Model):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    v: int = PROTOCOL_VERSION
    id: str = Field(default_factory=new_id, min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_-]+$")
    ts: datetime = Field(default_factory=utcnow)
    sender: AgentName = Field(alias="from")
    to: list[Recipient] = Field(min_length=1)
    thread: TaskId | None = None
    type: MessageType
    ack_required: bool = False
    reply_to: str | None = None
    body: Any = Field(default_factory=dict)
    origin: Origin | None = None

    @model_validator(mode="before")
    @classmethod
    def _utf8_only(cls, data: Any, info: ValidationInfo) -> Any:
        """Refuse text that cannot be written as UTF-8 (a lone surrogate, e.g. from a non-UTF-8 byte in argv)
        before it is accepted, rather than when the message is serialized. JSON input needs no look: its
        parser refuses a lone surrogate itself."""
        if info.mode != "json" and (problem := non_utf8(data)) is not None:
            raise ValueError(f"{problem}: send UTF-8 text")
        return data

    @model_validator(mode="after")
    def _typed_body(self) -> "Message":
        model = BODY_MODELS[self.type]
        if not isinstance(self.body, model):
            raw = self.body.model_dump() if isinstance(self.body, BaseModel) else self.body
            try:
                self.body = model.model_validate(raw if raw is not None else {})
            except ValidationError as exc:
                raise ValueError(_body_errors(exc)) from None
        if self.type in ACK_ALWAYS:
            self.ack_required = True
        return self

    @field_validator("ts")
    @classmethod
    def _aware(cls, ts: datetime) -> datetime:
        if ts.tzinfo is None:
            raise ValueError("timestamp must carry a UTC offset")
        return ts

    @property
    def task(self) -> str | None:
        """The task this message is about: the thread, else the body's `task` field."""
        return self.thread or getattr(self.body, "task", None)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)


@functools.cache
def field_adapter(model: type[Body], name: str) -> TypeAdapter[Any]:
    """A validator for one body field alone, with its constraints (`context_pct` 0-100); KeyError if the
    model has no field `name`."""
    info = model.model_fields[name]
    return TypeAdapter(Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation)


def make_message(
    type: MessageType | str, sender: str, to: list[str] | str, body: dict[str, Any] | Body | None = None,
    **envelope: Any,
) -> Message:
    """Build and validate a message; raise InvalidMessage with one readable line on failure."""
    recipients = [to] if isinstance(to, str) else list(to)
    data = {"type": type, "from": sender, "to": recipients, "body": body or {}, **envelope}
    return parse_message(data)


def parse_message(data: dict[str, Any] | str | bytes) -> Message:
    """Validate a message from a dict or JSON text; raise InvalidMessage with one readable line on failure."""
    try:
        if isinstance(data, (str, bytes)):
            return Message.model_validate_json(_without_bom(data))
        return Message.model_validate(data)
    except ValidationError as exc:
        raise InvalidMessage(describe_validation_error(exc)) from None


def _without_bom(data: str | bytes) -> str | bytes:
    """JSON text without a leading UTF-8 byte order mark (editors on some systems write one)."""
    if isinstance(data, bytes):
        return data.removeprefix(codecs.BOM_UTF8)
    return data.removeprefix(BOM)


def _body_errors(exc: ValidationError) -> str:
    return "; ".join(
        "body." + ".".join(str(p) for p in err["loc"]) + f": {err['msg'].removeprefix('Value error, ')}"
        for err in exc.errors()[:3]
    )


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming the first few fields that failed and why."""
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    more = len(exc.errors()) - 3
    return "invalid message: " + "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")

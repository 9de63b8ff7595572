"""A task on the board: its status machine, notes, attempts and validation spec."""

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import ConfigDict, Field

from protocol.base import Model
from protocol.errors import InvalidTransition
from protocol.ids import utcnow
from protocol.names import TaskId


class TaskStatus(StrEnum):
    OPEN = "open"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    VALIDATING = "validating"
    DONE = "done"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"


S = TaskStatus
# The one table of allowed status changes. A failed attempt returns a live task to OPEN (or BLOCKED when
# its attempts are spent); reopening a finished task is an explicit DONE/CANCELLED/BLOCKED -> OPEN.
TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    S.OPEN: frozenset({S.ASSIGNED, S.IN_PROGRESS, S.DONE, S.BLOCKED, S.CANCELLED}),
    S.ASSIGNED: frozenset({S.OPEN, S.IN_PROGRESS, S.VALIDATING, S.DONE, S.BLOCKED, S.CANCELLED}),
    S.IN_PROGRESS: frozenset({S.OPEN, S.VALIDATING, S.DONE, S.BLOCKED, S.CANCELLED}),
    S.VALIDATING: frozenset({S.OPEN, S.IN_PROGRESS, S.DONE, S.BLOCKED, S.CANCELLED}),
    S.DONE: frozenset({S.OPEN}),
    S.BLOCKED: frozenset({S.OPEN, S.CANCELLED}),
    S.CANCELLED: frozenset({S.OPEN}),
}
LIVE_STATUSES = frozenset({S.ASSIGNED, S.IN_PROGRESS, S.VALIDATING})
FINAL_STATUSES = frozenset({S.DONE, S.BLOCKED, S.CANCELLED})


def check_transition(task_id: str, old: TaskStatus, new: TaskStatus) -> None:
    """Raise InvalidTransition unless `old -> new` is in the table (staying put is always allowed)."""
    if old != new and new not in TRANSITIONS[old]:
        allowed = ", ".join(sorted(TRANSITIONS[old])) or "nothing"
        hint = " (reopen it first: set status open)" if old in FINAL_STATUSES else ""
        raise InvalidTransition(f"task {task_id}: cannot go from {old} to {new}; from {old} it may go to {allowed}{hint}")


class NoteKind(StrEnum):
    FINDING = "finding"
    BLOCKER = "blocker"
    QUESTION = "question"
    UPDATE = "update"


class Note(Model):
    kind: NoteKind
    text: str
    author: str
    ts: datetime = Field(default_factory=utcnow)


class Check(Model):
    """One validation check run before a DONE claim counts.

    files_exist: every path in `paths` exists. content_check: `path` exists and matches regex `pattern`.
    command / tests / lint: `run` (a shell command from the plan's author) exits 0 within `timeout`.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["files_exist", "content_check", "command", "tests", "lint"]
    paths: list[str] = []
    path: str | None = None
    pattern: str | None = None
    run: str | None = None
    timeout: float = Field(default=120.0, gt=0, le=86_400)


class ValidationSpec(Model):
    model_config = ConfigDict(extra="forbid")

    checks: list[Check] = []
    workdir: str | None = None


class AttemptOutcome(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CHECKPOINT = "checkpoint"
    ABANDONED = "abandoned"


class Attempt(Model):
    number: int
    worker: str | None = None
    started: datetime = Field(default_factory=utcnow)
    ended: datetime | None = None
    outcome: AttemptOutcome = AttemptOutcome.RUNNING
    reason: str = ""


class Task(Model):
    id: TaskId
    title: str = Field(min_length=1, max_length=500)
    description: str = ""
    status: TaskStatus = TaskStatus.OPEN
    assignee: str | None = None
    tags: list[str] = []
    priority: int = 0
    blocked_by: list[TaskId] = []
    notes: list[Note] = []
    validation: ValidationSpec | None = None
    profile: str | None = None
    timeout: float | None = Field(default=None, gt=0)
    max_attempts: int | None = Field(default=None, ge=1)  # None: the swarm's setting
    workdir: str | None = None
    attempts: list[Attempt] = []
    # What an outside planning tool knows of the task (a wave's ol_bead_id, a bead's id), carried as is.
    metadata: dict[str, Any] = {}
    created_by: str = "operator"
    created: datetime = Field(default_factory=utcnow)
    updated: datetime = Field(default_factory=utcnow)

    def is_ready(self, done: set[str]) -> bool:
        """Open, with every blocker done."""
        return self.status == TaskStatus.OPEN and all(dep in done for dep in self.blocked_by)

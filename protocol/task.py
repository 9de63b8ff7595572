"""A task on the board: its status machine, notes, attempts and validation spec."""

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import ConfigDict, Field

from protocol.base import Label, Model, TaskId
from protocol.errors import InvalidTransition
from protocol.ids import utcnow


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
COORDINATED = "coordinator"  # metadata.dispatch of a task that a coordinator agent dispatches itself
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

    kind: Literal["files_exist", "content_check", "command", "tests", "lint"] = Field(description=(
        "`files_exist`: every path in `paths` exists. `content_check`: `path` exists and matches the regular "
        "expression `pattern`. `command`, `tests`, `lint`: the shell command `run` exits 0 within `timeout` "
        "(the three differ only in name)."))
    paths: list[str] = Field(default=[], description="files_exist: the paths, relative to the task's workdir.")
    path: str | None = Field(default=None, description="content_check: the file, relative to the task's workdir.")
    pattern: str | None = Field(default=None, description="content_check: a Python regular expression to search.")
    run: str | None = Field(default=None, description=(
        "command / tests / lint: a shell command, run in the task's workdir."))
    timeout: float = Field(default=120.0, gt=0, le=86_400, description=(
        "command / tests / lint: seconds (or a duration such as `5m`) before the check fails."))


class ValidationSpec(Model):
    """What makes a worker's DONE believable: every check must pass."""

    model_config = ConfigDict(extra="forbid")

    checks: list[Check] = Field(default=[], description="The checks, run in order; all must pass.")
    workdir: str | None = Field(default=None, description=(
        "Where the checks run, relative to the task's workdir (default: the task's workdir)."))


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
    """A task on the board. A plan sets the fields described here; the rest belong to the ledger."""

    id: TaskId = Field(description="A unique id: letters, digits, `.`, `_`, `-`.")
    title: str = Field(min_length=1, max_length=500, description="One line for people (boards, the feed).")
    description: str = Field(default="", description=(
        "What to do, in full: it reaches the worker only through its prompt file (for the `script` profile, "
        "the shell script to run)."))
    status: TaskStatus = TaskStatus.OPEN
    assignee: str | None = None
    tags: list[str] = Field(default=[], description="Labels, for `swarm board --tag`.")
    priority: int = Field(default=0, description="Lower numbers start first among ready tasks.")
    blocked_by: list[TaskId] = Field(default=[], description=(
        "Tasks that must be done first: ids in the same plan or already on the board."))
    notes: list[Note] = []
    validation: ValidationSpec | None = Field(default=None, description=(
        "`[tasks.validation]`: the checks a DONE must pass before it counts (see the check kinds)."))
    profile: str | None = Field(default=None, description=(
        "The worker profile from swarm.toml (default: `default_profile`); its program must be on PATH."))
    timeout: float | None = Field(default=None, gt=0, description=(
        "Seconds (or a duration such as `20m`, `1h30m`) one attempt may run (default: `task_timeout`)."))
    max_attempts: int | None = Field(default=None, ge=1, description=(
        "Failed attempts before the task is blocked (default: swarm.toml's `max_attempts`)."))
    workdir: str | None = Field(default=None, description=(
        "Where the worker runs and the checks are made, relative to the plan file (default: the plan file's "
        "directory; for tasks added by hand, the project)."))
    labels: list[Label] = Field(default=[], description=(
        "What the machine that runs it must offer: labels a worker host joined with (`swarm host join --labels "
        "gpu,linux`), or `[hosts] labels` for the supervisor's own machine. Every one must be offered; none: "
        "any machine."))
    attempts: list[Attempt] = []
    retry_from: int = 0  # attempts before this index were spent before the last `swarm retry`: they no longer count
    # What an outside planning tool knows of the task (a wave's ol_bead_id, a bead's id), carried as is.
    metadata: dict[str, Any] = {}
    created_by: str = "operator"
    created: datetime = Field(default_factory=utcnow)
    updated: datetime = Field(default_factory=utcnow)

    def is_ready(self, done: set[str]) -> bool:
        """Open, with every blocker done, and left to the supervisor (not kept by a coordinator)."""
        return (self.status == TaskStatus.OPEN and not self.coordinated()
                and all(dep in done for dep in self.blocked_by))

    def coordinated(self) -> bool:
        """Whether a coordinator agent assigns and dispatches this task itself (`metadata.dispatch`), so the
        supervisor never starts a worker for it nor reopens it after a restart."""
        return self.metadata.get("dispatch") == COORDINATED

    def failed_attempts(self) -> int:
        """The failed attempts that count against the task's budget: those since the last `swarm retry`."""
        return sum(a.outcome == AttemptOutcome.FAILED for a in self.attempts[self.retry_from:])

"""The board: tasks as a fold of ledger events.

`apply` is deterministic and does no I/O: the same events always give the same board, whether folded from
the start of the log or from a snapshot. It never raises on an odd event (an unknown task, a field that
does not validate): appends are validated by the ledger, and a reader must survive whatever is on disk.
"""

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from protocol.event import Event, EventType
from protocol.task import Attempt, AttemptOutcome, Note, NoteKind, Task, TaskStatus

Board = dict[str, Task]

# Fields that `update_task` may change; status goes through `Ledger.transition`, the rest is history.
UPDATABLE_FIELDS = frozenset({
    "title", "description", "assignee", "tags", "priority", "blocked_by", "validation", "profile", "timeout",
    "max_attempts", "workdir", "metadata",
})
# Feed events that carry a task become notes on it.
FEED_NOTES = {
    EventType.FINDING: NoteKind.FINDING,
    EventType.QUESTION: NoteKind.QUESTION,
    EventType.BLOCKER_FOUND: NoteKind.BLOCKER,
}
_ENDING_OUTCOMES = {
    EventType.TASK_COMPLETED: AttemptOutcome.DONE,
    EventType.TASK_FAILED: AttemptOutcome.FAILED,
    EventType.TASK_CHECKPOINT: AttemptOutcome.CHECKPOINT,
}


def apply(tasks: Board, event: Event) -> Board:
    """Fold one event into `tasks` (in place, for speed over a million events) and return it."""
    if event.task is None:
        return tasks
    if event.type == EventType.TASK_CREATED:
        _create(tasks, event)
        return tasks
    task = tasks.get(event.task)
    if task is None:
        return tasks
    _apply_type(task, event)
    _apply_status(task, event)
    task.updated = event.ts
    if event.type == EventType.TASK_UPDATED and isinstance(event.detail.get("fields"), dict):
        tasks[task.id] = with_fields(task, event.detail["fields"]) or task
    return tasks


def clone(task: Task) -> Task:
    """A copy that `apply` may change without touching `task`: apply only sets fields, appends to `notes` and
    `attempts`, and ends the last attempt, so those are all that need copying (a deep copy costs ~50x more)."""
    attempts = task.attempts[:-1] + [a.model_copy() for a in task.attempts[-1:]]
    return task.model_copy(update={"attempts": attempts, "notes": list(task.notes)})


def fold(events: Iterable[Event], tasks: Board | None = None) -> Board:
    """The board after `events`, starting from `tasks` (empty by default)."""
    board: Board = {} if tasks is None else tasks
    for event in events:
        apply(board, event)
    return board


def with_fields(task: Task, fields: Mapping[str, Any]) -> Task | None:
    """A copy of `task` with `fields` changed and validated; None if they do not validate."""
    known = {k: v for k, v in fields.items() if k in UPDATABLE_FIELDS}
    try:
        return Task.model_validate({**task.model_dump(), **known})
    except ValidationError:
        return None


def _create(tasks: Board, event: Event) -> None:
    if event.task in tasks:
        return
    try:
        task = Task.model_validate(event.detail.get("task"))
    except ValidationError:
        return
    if task.id == event.task:
        tasks[task.id] = task


def _apply_type(task: Task, event: Event) -> None:
    detail = event.detail
    if event.type == EventType.TASK_ASSIGNED:
        worker = detail.get("worker")
        number = detail.get("attempt")
        number = number if isinstance(number, int) else len(task.attempts) + 1
        task.assignee = worker if isinstance(worker, str) else None
        task.attempts.append(Attempt(number=number, worker=task.assignee, started=event.ts))
    elif event.type in _ENDING_OUTCOMES:
        outcome = _ENDING_OUTCOMES[event.type]
        if event.type == EventType.TASK_FAILED and detail.get("outcome") == AttemptOutcome.ABANDONED.value:
            outcome = AttemptOutcome.ABANDONED  # ended through no fault of its worker: no attempt spent
        _end_attempt(task, outcome, event, str(detail.get("reason", "")))
        if event.type != EventType.TASK_COMPLETED:
            task.assignee = None
    elif event.type == EventType.TASK_RETRIED:
        task.retry_from = len(task.attempts)
    elif event.type == EventType.NOTE_ADDED:
        _add_note(task, detail.get("kind"), detail.get("text"), event)
    elif event.type in FEED_NOTES:
        _add_note(task, FEED_NOTES[event.type], detail.get("text", event.summary), event)


def _apply_status(task: Task, event: Event) -> None:
    raw = event.detail.get("status")
    if raw is None:
        return
    try:
        status = TaskStatus(raw)
    except ValueError:
        return
    task.status = status
    if status == TaskStatus.OPEN:
        task.assignee = None
        # An attempt that ended without a verdict (the pane died, the operator reopened it) is abandoned.
        _end_attempt(task, AttemptOutcome.ABANDONED, event, "", only_running=True)


def _end_attempt(task: Task, outcome: AttemptOutcome, event: Event, reason: str, only_running: bool = False) -> None:
    if not task.attempts:
        return
    last = task.attempts[-1]
    if only_running and last.outcome != AttemptOutcome.RUNNING:
        return
    last.outcome, last.ended = outcome, event.ts
    if reason:
        last.reason = reason


def _add_note(task: Task, kind: Any, text: Any, event: Event) -> None:
    try:
        task.notes.append(Note(kind=NoteKind(kind), text=str(text), author=event.agent, ts=event.ts))
    except ValueError:
        return


def find_cycle(deps: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A dependency cycle as a path `[a, b, ..., a]`, or None. `deps` maps a task to the tasks it waits on."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for root in deps:
        if state.get(root):
            continue
        path: list[str] = [root]
        stack = [iter(deps.get(root, ()))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(deps.get(nxt, ())))
    return None


def in_wave_order(tasks: Iterable[Task]) -> list[Task]:
    """`tasks` sorted as they run: by wave (0 for a task that waits on none of them, else one past the latest
    wave it waits on), then priority, then id. Blockers outside `tasks` do not count; a cycle (refused when a
    plan loads) does not loop."""
    by_id = {t.id: t for t in tasks}
    wave: dict[str, int] = {}
    for root in by_id:
        stack = [root]
        while stack:  # depth-first without recursion: a long chain must not hit the recursion limit
            task_id = stack[-1]
            waiting = [d for d in by_id[task_id].blocked_by if d in by_id and d not in wave and d not in stack]
            if waiting:
                stack.extend(waiting)
                continue
            stack.pop()
            wave[task_id] = 1 + max((wave.get(d, -1) for d in by_id[task_id].blocked_by if d in by_id), default=-1)
    return sorted(by_id.values(), key=lambda t: (wave[t.id], t.priority, t.id))


def next_task_id(board: Mapping[str, Task]) -> str:
    """t-<n>, one past the highest t-<n> on the board."""
    numbers = [int(m.group(1)) for tid in board if (m := re.fullmatch(r"t-(\d+)", tid))]
    return f"t-{max(numbers, default=0) + 1}"

"""The board read without the models: the snapshot and the tail folded over plain JSON values.

`swarm board --json` and `swarm status` print what `Ledger.board()` gives; building ~100,000 pydantic objects
(and importing pydantic) to print them costs more than the read. This reader loads the board snapshot and
the log's tail with `json` and folds them as `board.apply` does, over the dicts the models would dump
(`model_dump(mode="json")`), so that printing them gives the models' JSON byte for byte
(`tests/test_lean_board.py` compares the two on every event kind).

It only answers when it can vouch for the answer: anything it does not fully understand (a snapshot of
another shape, a line that is not plain JSON, a timestamp not in the models' own form, an event type it does
not know, a long tail that a reader should snapshot) raises `Unsure`, and the caller reads with the models.
A task created is taken as it is when it is exactly in the form the models dump (as the ledger writes it);
any other, and a task's fields updated, are validated by the models themselves, imported only then.
"""

import functools
import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from swarmd.ledger import lines

BIG_SNAPSHOT = 256 << 10  # bytes: a snapshot this big is parsed by pydantic-core's parser
SNAPSHOT_EVERY = 5_000  # swarmd.ledger.log.SNAPSHOT_EVERY: a longer tail is left to the models, which snapshot it
LOG_NAME, SNAPSHOT_NAME, REGISTRY_NAME = "events.jsonl", "board.json", "registry.json"
SUPERVISOR_ROLE = "supervisor"
# The fields of protocol.task's Task, Note and Attempt, in the models' order (a test checks them against the
# models): a snapshot of another shape (written before a field was added) is left to the models.
TASK_FIELDS = ("id", "title", "description", "status", "assignee", "tags", "priority", "blocked_by", "notes",
               "validation", "profile", "timeout", "max_attempts", "workdir", "labels", "attempts", "retry_from",
               "metadata", "created_by", "created", "updated")
NOTE_FIELDS = ("kind", "text", "author", "ts")
ATTEMPT_FIELDS = ("number", "worker", "started", "ended", "outcome", "reason")
SPEC_FIELDS = ("checks", "workdir")
CHECK_FIELDS = ("kind", "paths", "path", "pattern", "run", "timeout")
CHECK_KINDS = frozenset({"files_exist", "content_check", "command", "tests", "lint"})
ATTEMPT_OUTCOMES = frozenset({"running", "done", "failed", "checkpoint", "abandoned"})
# sha256 of Task's JSON schema (sort_keys): is_dumped_task checks the shape it describes (a test recomputes it).
TASK_SCHEMA_SHA256 = "8098f3493717682fbef8440c5d3b46b30e3743b05b6272371f5e1767e32b1814"
TASK_STATUSES = frozenset({"open", "assigned", "in_progress", "validating", "done", "blocked", "cancelled"})
NOTE_KINDS = frozenset({"finding", "blocker", "question", "update"})
# Every EventType, by what it does to the board (board.apply). An event type outside these is not folded here.
ENDING_OUTCOMES = {"task_completed": "done", "task_failed": "failed", "task_checkpoint": "checkpoint"}
FEED_NOTES = {"finding": "finding", "question": "question", "blocker_found": "blocker"}
STATE_EVENTS = frozenset({"task_created", "task_updated", "task_assigned", "task_retried", "note_added",
                          *ENDING_OUTCOMES, *FEED_NOTES})
OTHER_EVENTS = frozenset({
    "agent_registered", "agent_started", "agent_stopped", "agent_updated", "task_started", "task_validating",
    "progress", "file_changed", "cost_update", "custom", "supervisor_started", "supervisor_stopped",
    "supervisor_recovered", "worker_spawned", "worktree_created", "merge_queued", "worktree_removed",
})
EVENT_TYPES = STATE_EVENTS | OTHER_EVENTS
# A timestamp as the models write it: UTC as Z, microseconds only when there are some, another offset kept.
_TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.(?!000000)\d{6})?(Z|[+-](?!00:00)\d\d:\d\d)"
_INFINITY = float("inf")
_ESCAPED_SURROGATE = rb"\\u[dD][89abcdefABCDEF]"

Tasks = dict[str, dict[str, Any]]


class Unsure(Exception):
    """The lean reader cannot vouch for an answer equal to the models': read with the models instead."""


def read_board(ledger_dir: Path, *, supervisor_only: bool = False) -> Tasks:
    """The board now, as the dicts `Task.model_dump(mode="json")` gives, in the models' order; Unsure when
    the models must answer (see the module's docstring). With `supervisor_only`, also Unsure unless every
    agent in the registry is a supervisor: `swarm status` then has no worker to show (nor tmux to ask).
    OSError from the file system is the caller's."""
    log = ledger_dir / LOG_NAME
    with _gc_paused():  # tens of thousands of containers, none of them cyclic: collections only cost here
        tasks, board_from = _snapshot(ledger_dir, log)
        registry_from = _registry_snapshot(ledger_dir, log) if supervisor_only else board_from
        replayed = 0
        for end, raw in lines.complete_lines(log, min(board_from, registry_from)):
            if not raw.strip():
                continue
            event, start = parse_event(raw), end - len(raw) - 1
            if start >= board_from:
                apply(tasks, event)
            if supervisor_only and start >= registry_from:
                _only_supervisors(event)
            replayed += 1
            if replayed > SNAPSHOT_EVERY:
                raise Unsure("a long tail: a read with the models writes a fresh snapshot")
    return tasks


def parse_event(raw: bytes) -> dict[str, Any]:
    """One log line as the dict the Event model would dump, checked; Unsure for anything else (a line the
    models would skip, fill in, or write back otherwise)."""
    if b"\\u" in raw and _pattern(_ESCAPED_SURROGATE).search(raw):
        raise Unsure("an escaped surrogate")
    try:
        event = _json().loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except ValueError:
        raise Unsure("a line that is not JSON") from None
    if not isinstance(event, dict):
        raise Unsure("a line that is not an object")
    seq, kind, task, ts = event.get("seq"), event.get("type"), event.get("task", None), event.get("ts")
    if (type(seq) is not int or kind not in EVENT_TYPES or not isinstance(event.get("agent"), str)
            or not (task is None or type(task) is str) or not isinstance(event.get("detail", {}), dict)
            or not isinstance(event.get("id", ""), str)
            or not isinstance(event.get("summary", ""), str) or not is_timestamp(ts)):
        raise Unsure("an event of another shape")
    event.setdefault("detail", {})
    event.setdefault("summary", "")
    event["task"] = task
    return event


def is_timestamp(value: Any) -> bool:
    """Whether `value` is a valid date and time in the exact form the models write one."""
    if type(value) is not str or not _pattern(_TS).fullmatch(value):
        return False
    from datetime import datetime

    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def apply(tasks: Tasks, event: dict[str, Any]) -> None:
    """Fold one checked event into `tasks` (in place), as `swarmd.ledger.board.apply` folds an Event."""
    task_id, kind = event["task"], event["type"]
    if task_id is None:
        return
    if kind == "task_created":
        raw = event["detail"].get("task")
        if task_id not in tasks and (created := raw if is_dumped_task(raw) else _models().created(raw)) is not None \
                and created["id"] == task_id:
            tasks[task_id] = created
        return
    task = tasks.get(task_id)
    if task is None:
        return
    _apply_type(task, event)
    _apply_status(task, event)
    task["updated"] = event["ts"]
    fields = event["detail"].get("fields")
    if kind == "task_updated" and isinstance(fields, dict):
        tasks[task_id] = _models().with_fields(task, fields) or task


def is_dumped_task(value: Any) -> bool:
    """Whether `value` is a task exactly as `Task.model_dump(mode="json")` gives one (as the ledger writes a
    task_created event's), so that validating it with the models would give it back unchanged. The models'
    schema is pinned by TASK_SCHEMA_SHA256 (a test): a change to Task, Note, Attempt or Check must be
    reviewed here."""
    t = value
    return (type(t) is dict and tuple(t) == TASK_FIELDS and _is_id(t["id"]) and type(t["title"]) is str
            and 1 <= len(t["title"]) <= 500 and type(t["description"]) is str and t["status"] in TASK_STATUSES
            and _opt_str(t["assignee"]) and _strs(t["tags"]) and type(t["priority"]) is int
            and type(t["blocked_by"]) is list and all(map(_is_id, t["blocked_by"]))
            and type(t["notes"]) is list and all(map(_is_note, t["notes"]))
            and (t["validation"] is None or _is_spec(t["validation"])) and _opt_str(t["profile"])
            and (t["timeout"] is None or type(t["timeout"]) is float and t["timeout"] > 0)
            and (t["max_attempts"] is None or type(t["max_attempts"]) is int and t["max_attempts"] >= 1)
            and _opt_str(t["workdir"]) and _labels(t["labels"]) and type(t["attempts"]) is list and all(map(_is_attempt, t["attempts"]))
            and type(t["retry_from"]) is int and type(t["metadata"]) is dict and type(t["created_by"]) is str
            and is_timestamp(t["created"]) and is_timestamp(t["updated"]))


def _labels(value: Any) -> bool:
    from protocol.names import LABEL_RE  # the one rule for host labels (the standard library alone)

    return type(value) is list and all(type(v) is str and LABEL_RE.fullmatch(v) is not None for v in value)


def _is_id(value: Any) -> bool:
    from protocol.names import TASK_ID_RE  # the one rule for task ids (the standard library alone)

    return type(value) is str and TASK_ID_RE.fullmatch(value) is not None


def _opt_str(value: Any) -> bool:
    return value is None or type(value) is str


def _strs(value: Any) -> bool:
    return type(value) is list and all(type(v) is str for v in value)


def _is_note(n: Any) -> bool:
    return (type(n) is dict and tuple(n) == NOTE_FIELDS and n["kind"] in NOTE_KINDS and type(n["text"]) is str
            and type(n["author"]) is str and is_timestamp(n["ts"]))


def _is_attempt(a: Any) -> bool:
    return (type(a) is dict and tuple(a) == ATTEMPT_FIELDS and type(a["number"]) is int and _opt_str(a["worker"])
            and is_timestamp(a["started"]) and (a["ended"] is None or is_timestamp(a["ended"]))
            and a["outcome"] in ATTEMPT_OUTCOMES and type(a["reason"]) is str)


def _is_spec(v: Any) -> bool:
    return (type(v) is dict and tuple(v) == SPEC_FIELDS and type(v["checks"]) is list
            and all(map(_is_check, v["checks"])) and _opt_str(v["workdir"]))


def _is_check(c: Any) -> bool:
    return (type(c) is dict and tuple(c) == CHECK_FIELDS and c["kind"] in CHECK_KINDS and _strs(c["paths"])
            and _opt_str(c["path"]) and _opt_str(c["pattern"]) and _opt_str(c["run"])
            and type(c["timeout"]) is float and 0 < c["timeout"] <= 86_400)


def _apply_type(task: dict[str, Any], event: dict[str, Any]) -> None:
    kind, detail = event["type"], event["detail"]
    if kind == "task_assigned":
        worker, number = detail.get("worker"), detail.get("attempt")
        if isinstance(number, bool):
            raise Unsure("an attempt number that is a bool")
        task["assignee"] = worker if isinstance(worker, str) else None
        task["attempts"].append({"number": number if isinstance(number, int) else len(task["attempts"]) + 1,
                                 "worker": task["assignee"], "started": event["ts"], "ended": None,
                                 "outcome": "running", "reason": ""})
    elif kind in ENDING_OUTCOMES:
        outcome = ENDING_OUTCOMES[kind]
        if kind == "task_failed" and detail.get("outcome") == "abandoned":
            outcome = "abandoned"
        _end_attempt(task, outcome, event, _text(detail.get("reason", "")))
        if kind != "task_completed":
            task["assignee"] = None
    elif kind == "task_retried":
        task["retry_from"] = len(task["attempts"])
    elif kind == "note_added":
        _add_note(task, detail.get("kind"), detail.get("text"), event)
    elif kind in FEED_NOTES:
        _add_note(task, FEED_NOTES[kind], detail.get("text", event["summary"]), event)


def _apply_status(task: dict[str, Any], event: dict[str, Any]) -> None:
    status = event["detail"].get("status")
    if not isinstance(status, str) or status not in TASK_STATUSES:
        return  # TaskStatus(status) refuses it: no change
    task["status"] = status
    if status == "open":
        task["assignee"] = None
        _end_attempt(task, "abandoned", event, "", only_running=True)


def _end_attempt(task: dict[str, Any], outcome: str, event: dict[str, Any], reason: str,
                 only_running: bool = False) -> None:
    if not task["attempts"]:
        return
    last = task["attempts"][-1]
    if only_running and last["outcome"] != "running":
        return
    last["outcome"], last["ended"] = outcome, event["ts"]
    if reason:
        last["reason"] = reason


def _add_note(task: dict[str, Any], kind: Any, text: Any, event: dict[str, Any]) -> None:
    if not isinstance(kind, str) or kind not in NOTE_KINDS:
        return  # NoteKind(kind) refuses it: no note
    task["notes"].append({"kind": kind, "text": _text(text), "author": event["agent"], "ts": event["ts"]})


def _text(value: Any) -> str:
    """`str(value)` as the models take it, for the values whose text is the same however they were parsed."""
    if isinstance(value, str) or value is None or type(value) is int or isinstance(value, bool):
        return str(value)
    raise Unsure("a text field that is neither text nor a whole number")


def _snapshot(ledger_dir: Path, log: Path) -> tuple[Tasks, int]:
    """The board snapshot's tasks and the offset it covers; none and 0 when there is none (the models replay
    the whole log then); Unsure for one the models might read otherwise."""
    snap = _read_snapshot(ledger_dir / SNAPSHOT_NAME)
    if snap is None:
        return {}, 0
    tasks = snap.get("tasks")
    if not isinstance(tasks, dict):
        raise Unsure("a snapshot of another shape")
    try:  # the keys of every task and of its first note and attempt (one writer wrote them all alike)
        sound = (all(map(TASK_FIELDS.__eq__, map(tuple, tasks.values())))
                 and all(all(map(NOTE_FIELDS.__eq__, map(tuple, t["notes"][:1]))) for t in tasks.values())
                 and all(all(map(ATTEMPT_FIELDS.__eq__, map(tuple, t["attempts"][:1]))) for t in tasks.values()))
    except TypeError:
        sound = False
    if not sound:
        raise Unsure("a snapshot task of another shape")
    if not lines.is_line_end(log, snap["offset"], snap["seq"]):
        raise Unsure("a snapshot that does not end on its line")
    return tasks, snap["offset"]


def _registry_snapshot(ledger_dir: Path, log: Path) -> int:
    """The offset the registry snapshot covers (0 without one); Unsure unless it holds supervisors only."""
    snap = _read_snapshot(ledger_dir / REGISTRY_NAME)
    if snap is None:
        return 0
    agents = snap.get("agents")
    if not isinstance(agents, dict) or not all(isinstance(a, dict) and a.get("role") == SUPERVISOR_ROLE
                                               for a in agents.values()):
        raise Unsure("a registry with agents other than supervisors")
    if not lines.is_line_end(log, snap["offset"], snap["seq"]):
        raise Unsure("a registry snapshot that does not end on its line")
    return snap["offset"]


def _only_supervisors(event: dict[str, Any]) -> None:
    """Unsure if `event` may register an agent that is not a supervisor or give one another role."""
    detail = event["detail"]
    if event["type"] == "agent_registered":
        entry = detail.get("entry")
        if not isinstance(entry, dict) or entry.get("role") != SUPERVISOR_ROLE:
            raise Unsure("an agent that is not a supervisor")
    elif event["type"] == "agent_updated":
        fields = detail.get("fields")
        if isinstance(fields, dict) and fields.get("role", SUPERVISOR_ROLE) != SUPERVISOR_ROLE:
            raise Unsure("an agent that is not a supervisor")


def _read_snapshot(path: Path) -> dict[str, Any] | None:
    """A snapshot's JSON with its seq and offset checked; None if there is none; Unsure if it is odd."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        data = f.read()
    if b"\\u" in data and _pattern(_ESCAPED_SURROGATE).search(data):
        raise Unsure("a snapshot with an escaped surrogate")
    try:
        snap = _parse_big(data) if len(data) >= BIG_SNAPSHOT else _json().loads(data, parse_constant=_no_constant)
    except ValueError:
        raise Unsure("a snapshot that is not JSON") from None
    if not isinstance(snap, dict) or type(snap.get("seq")) is not int or type(snap.get("offset")) is not int:
        raise Unsure("a snapshot of another shape")
    return snap


@contextmanager
def _gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@functools.cache
def _pattern(source: Any) -> Any:
    """A compiled regular expression (compiled on first use: a read of an empty log needs none)."""
    import re

    return re.compile(source)


def _json() -> Any:
    """The json module, imported on first use: `swarm status` on an empty log prints without it."""
    import json

    return json


def _parse_big(data: bytes) -> Any:
    """A big snapshot parsed by pydantic-core's parser (twice as fast as `json` on a board of 1,000 tasks, and
    imported anyway to print it): the same values for the same JSON, NaN and Infinity refused as `json` is
    told to refuse them. ValueError for text that is not JSON."""
    from pydantic_core import from_json

    return from_json(data, allow_inf_nan=False, cache_strings="keys")


def _finite(text: str) -> float:
    """A JSON number with a fraction or exponent, refused (ValueError) if it overflows to infinity: the models
    would write it back as null."""
    value = float(text)
    if value in (_INFINITY, -_INFINITY):
        raise ValueError(f"{text} is not a finite number")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON the models read")


class _Models:
    """The two folds that need the Task model's validation, for a tail that holds them."""

    def __init__(self) -> None:
        from swarmd.ledger import board

        self.board = board

    def created(self, raw: Any) -> dict[str, Any] | None:
        """A task_created event's task as the models fold it: validated, dumped; None if it does not validate."""
        from pydantic import ValidationError

        try:
            return self.board.Task.model_validate(raw).model_dump(mode="json")
        except ValidationError:
            return None

    def with_fields(self, task: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any] | None:
        """`board.with_fields` over a dumped task."""
        from pydantic import ValidationError

        try:
            current = self.board.Task.model_validate(task)
        except ValidationError:
            raise Unsure("a task the models would not have folded so") from None
        changed = self.board.with_fields(current, fields)
        return None if changed is None else changed.model_dump(mode="json")


_loaded: list[_Models] = []


def _models() -> _Models:
    if not _loaded:
        _loaded.append(_Models())
    return _loaded[0]


def dump_json(tasks: list[dict[str, Any]]) -> bytes:
    """`tasks` as `TypeAdapter(list[Task]).dump_json(tasks, indent=2)` writes the same tasks: pydantic-core's
    own encoder (its compiled part alone), so that numbers and escapes come out alike."""
    from pydantic_core import to_json

    return to_json(tasks, indent=2)

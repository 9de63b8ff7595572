"""The ledger: one append-only event log that the board, the feed and the registry are folded from.

`<home>/ledger/events.jsonl` holds one Event a line. Any process appends under the ledger lock
(`ledger/.lock`, an flock): find the last seq from the file's tail, write the lines with one `os.write` on
an O_APPEND descriptor, fsync when durable. Projections (board, registry, stats) are folds of the events;
their snapshots record the seq and byte offset they cover, so a reader loads one and replays only the tail.
"""

import fcntl
import gc
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError, create_model
from pydantic_core import PydanticSerializationError

from protocol import faults
from protocol.agent import AgentStatus, RegistryEntry
from protocol.event import Event, EventType
from protocol.ids import new_id, utcnow
from protocol.messages import describe_validation_error
from protocol.names import validate_agent_name, validate_task_id
from protocol.task import LIVE_STATUSES, NoteKind, Task, TaskStatus, check_transition
from swarmd.ledger import board as board_fold
from swarmd.ledger import feed, lines
from swarmd.ledger import registry as registry_fold
from swarmd.ledger.heartbeats import touch_heartbeat
from swarmd.errors import LedgerError
from swarmd.home import SwarmHome

SNAPSHOT_EVERY = 5_000  # a read that replays more tail events than this writes a fresh snapshot
MAX_EVENT_BYTES = 1 << 20
# A text copied from a message into an event is cut at this many characters (and a list at this many in all).
# Even escaped at 6 bytes a character, the few fields an event takes from one message stay far below
# MAX_EVENT_BYTES, so any message the mail accepts (up to 1 MiB) can be recorded.
MAX_FIELD_CHARS = 16_384
MAX_SUMMARY_CHARS = 1_000
_NEW_ID_TRIES = 20


class LedgerUnwritable(LedgerError):
    """The log cannot be written at all (a full disk, an I/O error): no event can be recorded until it can."""


class UnknownTask(LedgerError):
    """A task id that is not on the board."""


class DuplicateTask(LedgerError):
    """A task id that is already taken."""


class StaleTransition(LedgerError):
    """A change made for a worker that no longer holds the task (someone else already moved it on)."""


def _count(stats: dict[str, dict[str, int | float]], event: Event) -> dict[str, dict[str, int | float]]:
    """Events by type and by agent; a cost_update's usage (tokens, cost_usd) summed by task as `usage:<key>`."""
    for key, value in (("by_type", event.type.value), ("by_agent", event.agent)):
        counts = stats.setdefault(key, {})
        counts[value] = counts.get(value, 0) + 1
    delta = event.detail.get("delta") if event.type == EventType.COST_UPDATE else None
    if isinstance(delta, dict):
        for key, value in delta.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and isinstance(key, str):
                by_task = stats.setdefault(f"usage:{key}", {})
                by_task[event.task or ""] = by_task.get(event.task or "", 0) + value
    return stats


@dataclass(frozen=True)
class _Projection:
    name: str  # the snapshot is ledger/<name>.json
    key: str  # the state's key in the snapshot
    model: type[BaseModel]  # {"seq", "offset", key: state}: parsed in one pass by pydantic-core
    apply: Callable[[Any, Event], Any]
    subject: Callable[[Event], Any]  # the entry of the state an event may change in place
    clone: Callable[[Any], Any]  # a copy of an entry that `apply` may change without touching the original


def _projection(name: str, key: str, state_type: Any, apply: Callable[[Any, Event], Any],
                subject: Callable[[Event], Any], clone: Callable[[Any], Any]) -> _Projection:
    model = create_model(f"{name.title()}Snapshot", seq=(int, ...), offset=(int, ...), **{key: (state_type, ...)})
    return _Projection(name, key, model, apply, subject, clone)


BOARD = _projection("board", "tasks", dict[str, Task], board_fold.apply, lambda e: e.task, board_fold.clone)
REGISTRY = _projection("registry", "agents", dict[str, RegistryEntry], registry_fold.apply,
                       lambda e: e.detail.get("name", e.agent), lambda entry: entry.model_copy())
STATS = _projection("stats", "events", dict[str, dict[str, int | float]], _count, lambda e: None, lambda counts: counts)
PROJECTIONS = (BOARD, REGISTRY, STATS)


@dataclass
class _View:
    """A projection's state and the last seq and line boundary it covers."""

    state: Any
    seq: int = 0
    offset: int = 0
    shared: bool = False  # entries were handed to callers: copy an entry before an event changes it
    snapped: int = 0  # the seq of the last snapshot read or written for this view


class Ledger:
    def __init__(self, home: SwarmHome, *, durable: bool = True, stale_after: float = 300.0,
                 clock: Callable[[], datetime] = utcnow, snapshot_every: int = SNAPSHOT_EVERY) -> None:
        home.ensure_dirs()
        self.home = home
        self.durable = durable
        self.stale_after = stale_after
        self.snapshot_every = snapshot_every
        self._clock = clock
        self.path = home.ledger_dir / feed.LOG_NAME
        self._lock_path = home.ledger_dir / ".lock"
        self._heartbeats = home.run_dir / "heartbeats"
        self._tail: tuple[int, int] | None = None  # (offset, seq) of the log's end when we last appended
        self._views: dict[str, _View] = {}  # projections kept in memory, advanced incrementally
        self._reading = threading.Lock()
        self.appended = 0  # events appended through this handle: a caller can tell whether it wrote meanwhile
        # An append found the log written by another since the last append through this handle, or that last
        # append was made by another thread (see `ends_with_append_by`).
        self.others_wrote = False
        self._tail_thread: int | None = None  # the thread that made the last append through this handle

    # -- appending ---------------------------------------------------------------------------------------------

    def append(self, type: EventType, agent: str, task: str | None = None, summary: str = "",
               **detail: Any) -> Event:
        """Append a feed event. Changes with rules of their own must use their methods (transition, add_task...)."""
        type = _event_type(type)
        _refuse_bypass(type, task, detail)
        with self._locked():
            return self._write([self._draft(type, agent, task, summary, detail)])[0]

    def add_task(self, task: Task, agent: str) -> Event:
        return self.add_tasks([task], agent)[0]

    def add_new_task(self, fields: dict[str, Any], agent: str, task_id: str | None = None) -> Event:
        """Create one task from its plan fields, with `task_id` or the next free t-<n> (taken again if a racing
        writer got it first). Raises LedgerError for invalid fields, DuplicateTask for a taken `task_id`."""
        for attempt in range(_NEW_ID_TRIES):
            new = validated(Task, {"id": task_id or board_fold.next_task_id(self.board()), "created_by": agent,
                                   **fields})
            try:
                return self.add_task(new, agent)
            except DuplicateTask:
                if task_id or attempt == _NEW_ID_TRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def add_tasks(self, tasks: list[Task], agent: str) -> list[Event]:
        """Create tasks, all or none: ids unique, every blocker known (on the board or in the batch), no cycle."""
        with self._locked():
            board = self._view(BOARD).state
            _check_new_tasks(board, tasks)
            return self._write([self._draft(EventType.TASK_CREATED, agent, t.id, t.title,
                                            {"task": t.model_dump(mode="json")}) for t in tasks])

    def transition(self, task_id: str, status: TaskStatus, agent: str,
                   event_type: EventType = EventType.TASK_UPDATED, summary: str = "", *,
                   expect_assignee: str | None = None, **detail: Any) -> Event:
        """The one way a task's status changes: checked against the transition table under the lock.

        With `expect_assignee`, the change is made for that worker's attempt and is refused (StaleTransition)
        unless the task is still live and still that worker's: a decision taken on an older reading of the
        board never lands on someone else's attempt.
        """
        status = _enum(TaskStatus, status, "task status")
        with self._locked():
            current = self._held(task_id, expect_assignee)
            check_transition(task_id, current.status, status)
            detail = {**detail, "status": status.value}
            text = summary or f"{task_id}: {current.status} -> {status}"
            return self._write([self._draft(_event_type(event_type), agent, task_id, text, detail)])[0]

    def assign(self, task_id: str, entry: RegistryEntry, agent: str, summary: str = "", **detail: Any) -> Event:
        """Assign `task_id` to the worker that `entry` registers: its agent_registered and task_assigned
        (`detail` added, `worker` set to `entry.name`) events in one write, one fsync when durable. The
        registration comes first: a write cut short by a crash may leave it alone, never a task assigned to a
        worker the registry does not know. Checked as `transition` checks; returns the task_assigned event."""
        with self._locked():
            current = self._task(task_id)
            check_transition(task_id, current.status, TaskStatus.ASSIGNED)
            detail = {**detail, "worker": entry.name, "status": TaskStatus.ASSIGNED.value}
            text = summary or f"{task_id}: {current.status} -> {TaskStatus.ASSIGNED}"
            return self._write([self._registration(entry, agent),
                                self._draft(EventType.TASK_ASSIGNED, agent, task_id, text, detail)])[1]

    def retry(self, task_ids: list[str], agent: str) -> list[Event]:
        """Give blocked tasks (or open ones that have failed before) a fresh budget of attempts: one task_retried
        event each, setting it open; failures before it no longer count. All or none: LedgerError, and nothing
        written, if any task is unknown, done, cancelled or being worked on."""
        with self._locked():
            drafts = []
            for task_id in dict.fromkeys(task_ids):
                current = self._task(task_id)
                if current.status in LIVE_STATUSES:
                    raise LedgerError(f"task {task_id} is {current.status}: stop its worker first "
                                      f"(`swarm kill {current.assignee or 'WORKER'} --hold`), then retry it")
                if current.status not in (TaskStatus.BLOCKED, TaskStatus.OPEN):
                    raise LedgerError(f"task {task_id} is {current.status}, not blocked or failed: "
                                      "reopen it with `swarm task update --status open` if it should run again")
                detail = {"status": TaskStatus.OPEN.value, "failed_before": current.failed_attempts()}
                drafts.append(self._draft(EventType.TASK_RETRIED, agent, task_id,
                                          f"{task_id} retried: a fresh budget of attempts", detail))
            return self._write(drafts)

    def update_task(self, task_id: str, agent: str, *, expect_assignee: str | None = None, **fields: Any) -> Event:
        """Change a task's other fields (title, description, assignee, tags, priority, blocked_by...); with
        `expect_assignee`, only while that agent holds the task (StaleTransition otherwise)."""
        _check_field_names(fields, board_fold.UPDATABLE_FIELDS, "task", "set its status with transition()")
        with self._locked():
            board = self._view(BOARD).state
            new = validated(Task, {**self._held(task_id, expect_assignee).model_dump(), **fields})
            if "blocked_by" in fields:
                _check_dependencies(board, [new])
            dumped = new.model_dump(mode="json")
            detail = {"fields": {k: dumped[k] for k in fields}}
            summary = f"{task_id}: updated {', '.join(sorted(fields))}"
            return self._write([self._draft(EventType.TASK_UPDATED, agent, task_id, summary, detail)])[0]

    def add_note(self, task_id: str, kind: NoteKind, text: str, agent: str, *,
                 expect_assignee: str | None = None) -> Event:
        """A finding, blocker, question or update on a task; with `expect_assignee`, only while that agent holds
        the task (StaleTransition otherwise)."""
        kind = _enum(NoteKind, kind, "note kind")
        if not text.strip():
            raise LedgerError("a note needs some text")
        with self._locked():
            self._held(task_id, expect_assignee)
            detail = {"kind": kind.value, "text": text}
            return self._write([self._draft(EventType.NOTE_ADDED, agent, task_id, text[:200], detail)])[0]

    def register_agent(self, entry: RegistryEntry, agent: str) -> Event:
        with self._locked():
            return self._write([self._registration(entry, agent)])[0]

    def update_agent(self, name: str, agent: str, summary: str = "", **fields: Any) -> Event:
        """Change a registered agent's status, task, session, pid, role, host or metadata; `summary` is the feed's
        line (default: the fields changed)."""
        _check_field_names(fields, registry_fold.UPDATABLE_FIELDS, "agent", "")
        if fields.get("status") == AgentStatus.STALE:
            raise LedgerError("status stale is derived from heartbeats, never set: send a heartbeat instead")
        with self._locked():
            entry = self._view(REGISTRY).state.get(validate_agent_name(name))
            if entry is None:
                raise LedgerError(f"no agent {name!r} in the registry: see `swarm registry list`")
            dumped = validated(RegistryEntry, {**entry.model_dump(), **fields}).model_dump(mode="json")
            detail = {"name": name, "fields": {k: dumped[k] for k in fields}}
            summary = summary or f"{name}: updated {', '.join(sorted(fields))}"
            return self._write([self._draft(EventType.AGENT_UPDATED, agent, None, summary, detail)])[0]

    def heartbeat(self, name: str) -> None:
        """A sign of life: the mtime of run/heartbeats/<name>, never an event (they are too frequent)."""
        touch_heartbeat(self._heartbeats, name, self._clock())

    # -- reading -----------------------------------------------------------------------------------------------

    def board(self) -> dict[str, Task]:
        """The tasks now. Kept in memory and advanced by the new events only; the Task objects handed out
        never change afterwards (copy on write)."""
        return self._current(BOARD)

    def task(self, task_id: str) -> Task:
        task = self.board().get(task_id)
        if task is None:
            raise UnknownTask(_unknown_task(task_id))
        return task

    def registry(self) -> dict[str, RegistryEntry]:
        agents = self._current(REGISTRY)
        return registry_fold.with_liveness(agents, self._heartbeats, self._clock(), self.stale_after)

    def agents(self, names: Iterable[str]) -> dict[str, RegistryEntry]:
        """The registry entries of `names` (those it has), with their liveness as `registry()` gives it: only
        their heartbeats are read."""
        agents = self._current(REGISTRY)
        chosen = {name: agents[name] for name in names if name in agents}
        return registry_fold.with_liveness(chosen, self._heartbeats, self._clock(), self.stale_after)

    def ends_with_append_by(self, thread: int) -> bool:
        """Whether the log ends with an append made through this handle by `thread` (a thread id): nobody has
        written since (False when unknown: nothing appended yet, or the log cannot be read). A write by another
        that came between two of `thread`'s is caught at the second (`others_wrote`)."""
        tail = self._tail
        try:
            return tail is not None and self._tail_thread == thread and os.stat(self.path).st_size == tail[0]
        except OSError:
            return False

    def knows_agent(self, name: str) -> bool:
        """Whether `name` is in the registry (without reading every agent's heartbeat, as `registry()` does)."""
        return name in self._current(REGISTRY)

    def stats(self) -> dict[str, Any]:
        """Events by type and by agent, tasks by status, agents by status, and the agents' usage from their
        cost_update events (tokens, `cost_usd`) by task and in all."""
        counts = self._load(STATS).state
        tasks: dict[str, int] = {}
        for task in self.board().values():
            tasks[task.status.value] = tasks.get(task.status.value, 0) + 1
        agents: dict[str, int] = {}
        for entry in self.registry().values():
            agents[entry.status.value] = agents.get(entry.status.value, 0) + 1
        by_task: dict[str, dict[str, int | float]] = {}
        for key, tasks_usage in counts.items():
            if key.startswith("usage:"):
                for task_id, value in tasks_usage.items():
                    by_task.setdefault(task_id, {})[key.removeprefix("usage:")] = value
        total: dict[str, int | float] = {}
        for usage in by_task.values():
            for key, value in usage.items():
                total[key] = total.get(key, 0) + value
        return {"events": sum(counts.get("by_type", {}).values()), "events_by_type": counts.get("by_type", {}),
                "events_by_agent": counts.get("by_agent", {}), "tasks_by_status": tasks, "agents_by_status": agents,
                "usage_by_task": by_task, "usage_total": total}

    def events(self, *, since_seq: int = 0, types: list[str] | None = None, agent: str | None = None,
               task: str | None = None, limit: int | None = None) -> list[Event]:
        """The matching events with a seq above `since_seq`, oldest first, at most `limit` of them."""
        found: list[Event] = []
        for _, event in feed.read_events(self.path, feed.offset_after(self.path, since_seq)):
            if limit is not None and len(found) >= limit:
                break
            if event is not None and feed.matches(event, types, agent, task):
                found.append(event)
        return found

    def follow(self, *, since_seq: int = 0, types: list[str] | None = None, agent: str | None = None,
               task: str | None = None, stop: threading.Event | None = None) -> Iterator[Event]:
        """Like `tail -f`: the matching events above `since_seq`, then each one appended, until `stop` is set."""
        return feed.follow(self.path, feed.offset_after(self.path, since_seq), types, agent, task, stop)

    def last_seq(self) -> int:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return 0
        try:
            return lines.last_seq(fd, lines.complete_end(fd, os.fstat(fd).st_size))
        finally:
            os.close(fd)

    def snapshot(self) -> None:
        """Write every projection's snapshot now (readers also do it when their tail grows long)."""
        for projection in PROJECTIONS:
            view = self._load(projection, write_snapshot=False)
            self._write_snapshot(projection, view)

    # -- internals: the lock and the write path --------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The ledger lock: a blocking flock (queued by the kernel, no polling), released when the fd closes."""
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _draft(self, type: EventType, agent: str, task: str | None, summary: str, detail: dict[str, Any]) -> Event:
        validate_agent_name(agent)
        if task is not None:
            validate_task_id(task)
        if len(summary) > MAX_SUMMARY_CHARS:
            summary = summary[: MAX_SUMMARY_CHARS - 1] + "\u2026"
        return Event(ts=self._clock(), agent=agent, type=type, task=task, summary=summary, detail=detail)

    def _registration(self, entry: RegistryEntry, agent: str) -> Event:
        detail = {"name": entry.name, "entry": entry.model_dump(mode="json")}
        return self._draft(EventType.AGENT_REGISTERED, agent, None, f"{entry.name} registered as {entry.role}", detail)

    def _write(self, events: list[Event]) -> list[Event]:
        """Number and append `events` (the caller holds the lock): one write, so no reader sees a partial batch."""
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            end, seq = self._end_of_log(fd)
            for number, event in enumerate(events, start=seq + 1):
                event.seq = number
            data = b"".join(_line(event) for event in events)
            faults.crash_point("ledger.before_write")
            faults.torn_write("ledger.torn_write", fd, data)
            self._write_all_or_nothing(fd, data, end)
            faults.crash_point("ledger.written")
            if self.durable:
                os.fsync(fd)
                if end == 0:
                    _fsync_dir(self.path.parent)
        finally:
            os.close(fd)
        self._tail = (end + len(data), events[-1].seq)
        me = threading.get_ident()
        self.others_wrote = self.others_wrote or self._tail_thread not in (None, me)
        self._tail_thread = me
        self.appended += len(events)
        return events

    def _write_all_or_nothing(self, fd: int, data: bytes, end: int) -> None:
        """Write the lines in one call; on a failed or short write (a full disk) cut the log back to `end`,
        so that no reader sees part of a batch, and refuse with a LedgerError."""
        try:
            written = os.write(fd, data)
        except OSError as exc:
            written, reason = 0, exc.strerror or str(exc)
        else:
            reason = "short write (disk full?)"
        if written != len(data):
            self._tail = None
            try:
                os.ftruncate(fd, end)
            except OSError:
                pass  # the next appender truncates the torn line; readers skip it meanwhile
            raise LedgerUnwritable(f"cannot append to {self.path}: {reason}: nothing was appended; "
                              "free some space and try again")

    def _end_of_log(self, fd: int) -> tuple[int, int]:
        """(offset, seq) of the log's last complete line; a torn last line is truncated away."""
        size = os.fstat(fd).st_size
        if self._tail is not None and self._tail[0] == size:
            return self._tail
        self.others_wrote = self.others_wrote or self._tail is not None
        end = lines.complete_end(fd, size)
        if end < size:
            os.ftruncate(fd, end)
        return end, lines.last_seq(fd, end)

    def _held(self, task_id: str, expect_assignee: str | None) -> Task:
        """The task (the caller holds the lock); StaleTransition if `expect_assignee` is given and the task is not
        live in that agent's hands."""
        current = self._task(task_id)
        if expect_assignee is not None and (current.assignee != expect_assignee
                                            or current.status not in LIVE_STATUSES):
            raise StaleTransition(f"task {task_id} is not {expect_assignee}'s (it is {current.status}"
                                  f"{', with ' + current.assignee if current.assignee else ''})")
        return current

    def _task(self, task_id: str) -> Task:
        task = self._view(BOARD).state.get(task_id)
        if task is None:
            raise UnknownTask(_unknown_task(task_id))
        return task

    # -- internals: projections and snapshots ----------------------------------------------------------------

    def _current(self, projection: _Projection) -> dict[str, Any]:
        with self._reading:
            view = self._view(projection)
            view.shared = True
            return dict(view.state)

    def _view(self, projection: _Projection) -> _View:
        """The projection kept in memory, carried forward from where it was by the events since."""
        view = self._views.get(projection.name)
        if view is None or view.offset > _size(self.path):
            view = self._views[projection.name] = self._load(projection)
        else:
            with _gc_paused():  # replaying allocates a lot; a full collection over a big board costs more
                self._replay(projection, view)
            self._snapshot_if_behind(projection, view)
        return view

    def _load(self, projection: _Projection, write_snapshot: bool = True) -> _View:
        """A fresh view: the snapshot, if it is sound, plus the tail of the log after it."""
        with _gc_paused():
            view = self._read_snapshot(projection) or _View({})
            view.snapped = view.seq
            self._replay(projection, view)
        if write_snapshot:
            self._snapshot_if_behind(projection, view)
        return view

    def _snapshot_if_behind(self, projection: _Projection, view: _View) -> None:
        """Keep reads fast as the log grows: a view more than `snapshot_every` events past its snapshot writes one."""
        if view.seq - view.snapped <= self.snapshot_every:
            return
        try:
            self._write_snapshot(projection, view)
            view.snapped = view.seq
        except OSError:
            pass  # a read-only home still reads; a writer will snapshot

    def _replay(self, projection: _Projection, view: _View) -> int:
        replayed = 0
        copied: set[Any] = set()
        for offset, event in feed.read_events(self.path, view.offset):
            if event is not None:
                if view.shared:
                    _copy_on_write(projection, view.state, event, copied)
                projection.apply(view.state, event)
                view.seq, replayed = event.seq, replayed + 1
            view.offset = offset
        return replayed

    def _read_snapshot(self, projection: _Projection) -> _View | None:
        """The snapshot, or None when it is missing, corrupt, or does not end on the line it claims."""
        try:
            snap = projection.model.model_validate_json(_read_no_follow(self.home.ledger_dir / f"{projection.name}.json"))
        except (OSError, ValidationError):
            return None  # missing, unreadable or a planted link: replay the log instead
        seq, offset = getattr(snap, "seq"), getattr(snap, "offset")
        if not self._is_line_end(offset, seq):
            return None
        return _View(getattr(snap, projection.key), seq, offset)

    def _is_line_end(self, offset: int, seq: int) -> bool:
        """Whether the log's line that ends just before `offset` is the one with `seq`."""
        return lines.is_line_end(self.path, offset, seq)

    def _write_snapshot(self, projection: _Projection, view: _View) -> None:
        """Atomically: a private temp file, then os.replace; racing writers each leave a sound snapshot."""
        snap = projection.model.model_construct(seq=view.seq, offset=view.offset, **{projection.key: view.state})
        target = self.home.ledger_dir / f"{projection.name}.json"
        tmp = target.with_name(f".{projection.name}.{new_id()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(snap.model_dump_json().encode())
                if self.durable:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)


def _read_no_follow(path: Path) -> bytes:
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as f:
        return f.read()


def _copy_on_write(projection: _Projection, state: dict[Any, Any], event: Event, copied: set[Any]) -> None:
    """Replace the entry `event` may change by a copy before it is changed, once per replay: entries handed
    out by an earlier read never change."""
    key = projection.subject(event)
    if key in state and key not in copied:
        state[key] = projection.clone(state[key])
        copied.add(key)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while a projection is built: loading tens of thousands of (acyclic) models
    otherwise triggers full collections that scan the whole heap, which tripled the board's read time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def clip_text(text: str, message_id: str) -> str:
    """`text` from message `message_id`, cut at MAX_FIELD_CHARS with a note naming the message if longer."""
    if len(text) <= MAX_FIELD_CHARS:
        return text
    return f"{text[:MAX_FIELD_CHARS]}\u2026 [cut: {len(text)} characters in all; the whole is in message {message_id}]"


def clip_fields(fields: dict[str, Any], message_id: str) -> dict[str, Any]:
    """`fields` taken from message `message_id`, with each text longer than MAX_FIELD_CHARS (and each list of
    texts longer than that in all) cut, and a note at the cut naming the message that holds the whole.

    Returns a new dict with `msg` set to the message id; other values are kept as they are.
    """
    clipped: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, str):
            value = clip_text(value, message_id)
        elif isinstance(value, list) and sum(len(str(v)) for v in value) > MAX_FIELD_CHARS:
            kept, total = [], 0
            for item in value:
                total += len(str(item))
                if total > MAX_FIELD_CHARS:
                    break
                kept.append(item)
            value = [*kept, f"\u2026 {len(value) - len(kept)} more; the whole list is in message {message_id}"]
        clipped[key] = value
    return {**clipped, "msg": message_id}


def _line(event: Event) -> bytes:
    try:
        data = event.model_dump_json().encode() + b"\n"
    except PydanticSerializationError as exc:
        raise LedgerError(f"event {event.type}: detail is not JSON: {exc}") from None
    if len(data) > MAX_EVENT_BYTES:
        raise LedgerError(f"event {event.type} is {len(data)} bytes; the limit is {MAX_EVENT_BYTES}: "
                          "put large content in a file and reference its path")
    return data


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _enum(kind: Any, value: Any, label: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise LedgerError(f"unknown {label} {value!r}: use one of {', '.join(m.value for m in kind)}") from None


def _event_type(value: Any) -> EventType:
    return _enum(EventType, value, "event type")


def validated(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """`model` built from `data`, or a LedgerError naming the fields that are wrong."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise LedgerError(describe_validation_error(exc).replace("invalid message", "invalid value", 1)) from None


def _unknown_task(task_id: str) -> str:
    return f"no task {task_id!r} on the board: see `swarm board` for the task ids"


def _refuse_bypass(type: EventType, task: str | None, detail: dict[str, Any]) -> None:
    """append() carries feed events; changes with rules of their own must go through their methods."""
    if type == EventType.TASK_CREATED:
        raise LedgerError("create tasks with add_task() (`swarm task add`), which checks ids and blockers")
    if type == EventType.AGENT_REGISTERED:
        raise LedgerError("register agents with register_agent() (`swarm registry register`)")
    if "fields" in detail and type in (EventType.TASK_UPDATED, EventType.AGENT_UPDATED):
        raise LedgerError("change fields with update_task() or update_agent(), which validate them")
    if task is not None and "status" in detail:
        raise LedgerError("change a task's status with transition() (`swarm task update --status`)")
    if type == EventType.AGENT_STOPPED and detail.get("status", "stopped") not in ("stopped", "dead"):
        raise LedgerError(f"agent_stopped status must be stopped or dead, not {detail.get('status')!r}")


def _check_field_names(fields: dict[str, Any], allowed: frozenset[str], what: str, hint: str) -> None:
    if not fields:
        raise LedgerError(f"nothing to update: name at least one {what} field")
    unknown = sorted(set(fields) - allowed)
    if unknown:
        extra = f" ({hint})" if hint and "status" in unknown else ""
        raise LedgerError(f"cannot update {what} field {', '.join(unknown)}{extra}; "
                          f"updatable: {', '.join(sorted(allowed))}")


def _check_new_tasks(board: dict[str, Task], tasks: list[Task]) -> None:
    seen: set[str] = set()
    for task in tasks:
        if task.id in board or task.id in seen:
            raise DuplicateTask(f"task id {task.id!r} is already taken: choose another id")
        seen.add(task.id)
    _check_dependencies(board, tasks)


def _check_dependencies(board: dict[str, Task], changed: list[Task]) -> None:
    """Every blocker of `changed` is known, and the dependency graph with them has no cycle."""
    deps = {tid: task.blocked_by for tid, task in board.items()} | {t.id: t.blocked_by for t in changed}
    for task in changed:
        for dep in task.blocked_by:
            if dep not in deps:
                raise LedgerError(f"task {task.id} is blocked by unknown task {dep!r}: "
                                  "add that task first, or in the same batch")
    cycle = board_fold.find_cycle(deps)
    if cycle:
        raise LedgerError(f"dependency cycle: {' -> '.join(cycle)}; remove one of these blocked_by links")

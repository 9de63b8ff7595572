"""The board fold: each event type's effect, and that odd events never raise."""

from datetime import UTC, datetime, timedelta

import pytest

from protocol.event import Event, EventType
from protocol.task import AttemptOutcome, NoteKind, Task, TaskStatus
from swarmd.ledger.board import apply, find_cycle, fold

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def ev(seq: int, type: EventType, tid: str | None = "a", agent: str = "sup", summary: str = "", **detail: object) -> Event:
    return Event(seq=seq, ts=T0 + timedelta(seconds=seq), agent=agent, type=type, task=tid, summary=summary,
                 detail=detail)


def created(task_id: str = "a", seq: int = 1, **fields: object) -> Event:
    return ev(seq, EventType.TASK_CREATED, task_id, task=Task(id=task_id, title="t", **fields).model_dump(mode="json"))


def test_assign_then_complete_records_the_attempt() -> None:
    board = fold([created(), ev(2, EventType.TASK_ASSIGNED, worker="w1", attempt=1, status="assigned"),
                  ev(3, EventType.TASK_COMPLETED, status="done")])
    task = board["a"]
    assert task.status == TaskStatus.DONE and task.assignee == "w1"
    assert [(a.number, a.worker, a.outcome, a.ended) for a in task.attempts] == [
        (1, "w1", AttemptOutcome.DONE, T0 + timedelta(seconds=3))]
    assert task.updated == T0 + timedelta(seconds=3)


@pytest.mark.parametrize(("type", "outcome"), [(EventType.TASK_FAILED, AttemptOutcome.FAILED),
                                               (EventType.TASK_CHECKPOINT, AttemptOutcome.CHECKPOINT)])
def test_failure_and_checkpoint_end_the_attempt_and_free_the_task(type: EventType, outcome: AttemptOutcome) -> None:
    board = fold([created(), ev(2, EventType.TASK_ASSIGNED, worker="w1", attempt=1, status="assigned"),
                  ev(3, type, status="open", reason="tests failed")])
    task = board["a"]
    assert task.status == TaskStatus.OPEN and task.assignee is None
    assert task.attempts[-1].outcome == outcome and task.attempts[-1].reason == "tests failed"


def test_reopening_abandons_a_running_attempt() -> None:
    board = fold([created(), ev(2, EventType.TASK_ASSIGNED, worker="w1", status="assigned"),
                  ev(3, EventType.TASK_UPDATED, status="open")])
    assert board["a"].attempts[0].number == 1
    assert board["a"].attempts[0].outcome == AttemptOutcome.ABANDONED and board["a"].assignee is None


def test_notes_from_note_added_and_feed_events() -> None:
    board = fold([created(), ev(2, EventType.NOTE_ADDED, agent="op", kind="update", text="hi"),
                  ev(3, EventType.FINDING, agent="w1", summary="found"),
                  ev(4, EventType.BLOCKER_FOUND, agent="w1", summary="stuck"),
                  ev(5, EventType.QUESTION, agent="w1", summary="why?"),
                  ev(6, EventType.PROGRESS, agent="w1", summary="not a note")])
    assert [(n.kind, n.text, n.author) for n in board["a"].notes] == [
        (NoteKind.UPDATE, "hi", "op"), (NoteKind.FINDING, "found", "w1"), (NoteKind.BLOCKER, "stuck", "w1"),
        (NoteKind.QUESTION, "why?", "w1")]


def test_fields_update() -> None:
    board = fold([created(), ev(2, EventType.TASK_UPDATED, fields={"title": "new", "tags": ["x"], "priority": 5})])
    assert (board["a"].title, board["a"].tags, board["a"].priority) == ("new", ["x"], 5)


def test_odd_events_are_ignored_never_raised() -> None:
    board = fold([created(), created(seq=2, description="second create of the same id is ignored")])
    odd = [ev(3, EventType.TASK_UPDATED, tid="ghost", status="done"),
           ev(4, EventType.TASK_UPDATED, status="no-such-status"),
           ev(5, EventType.TASK_UPDATED, fields={"title": ""}),
           ev(6, EventType.NOTE_ADDED, kind="nonsense", text="x"),
           ev(7, EventType.TASK_CREATED, tid="b", task={"bad": 1}),
           ev(8, EventType.TASK_CREATED, tid="c", task=Task(id="d", title="mismatch").model_dump(mode="json")),
           ev(9, EventType.TASK_ASSIGNED, worker=7, attempt="x"),
           ev(10, EventType.TASK_COMPLETED, tid=None)]
    for event in odd:
        apply(board, event)
    assert list(board) == ["a"]
    assert board["a"].title == "t" and board["a"].description == "" and board["a"].status == TaskStatus.OPEN
    assert board["a"].assignee is None and board["a"].attempts[0].number == 1


def test_find_cycle() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": []}) is None
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
    assert find_cycle({"x": [], "a": ["x", "b"], "b": ["x", "a"]}) == ["a", "b", "a"]

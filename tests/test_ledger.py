"""The ledger on real files: appends, refusals, torn lines, snapshots and the property that snapshot + tail
always equals a full replay."""

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.agent import RegistryEntry
from protocol.errors import InvalidName, InvalidTransition
from protocol.event import EventType
from protocol.task import NoteKind, Task, TaskStatus
from swarmd.ledger import board as board_fold
from swarmd.ledger import feed
from swarmd.ledger import registry as registry_fold
from swarmd.errors import LedgerError
from swarmd.home import SwarmHome
from swarmd.ledger.log import DuplicateTask, Ledger, UnknownTask

FIXED = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def led(swarm_home: SwarmHome) -> Ledger:
    return Ledger(swarm_home, durable=False)


def full_board(led: Ledger) -> dict[str, Task]:
    return board_fold.fold(e for _, e in feed.read_events(led.path) if e is not None)


def test_appends_number_events_and_keep_files_private(led: Ledger) -> None:
    events = [led.append(EventType.PROGRESS, "w1", summary=f"step {i}") for i in range(3)]
    assert [e.seq for e in events] == [1, 2, 3]
    assert [e.summary for e in led.events()] == ["step 0", "step 1", "step 2"]
    assert led.last_seq() == 3
    assert os.stat(led.path).st_mode & 0o777 == 0o600
    assert os.stat(led.path.parent).st_mode & 0o777 == 0o700
    assert json.loads(led.path.read_text().splitlines()[0])["seq"] == 1


def test_task_lifecycle(led: Ledger) -> None:
    led.add_tasks([Task(id="a", title="A"), Task(id="b", title="B", blocked_by=["a"])], "operator")
    led.transition("a", TaskStatus.ASSIGNED, "supervisor", EventType.TASK_ASSIGNED, worker="w1", attempt=1)
    led.transition("a", TaskStatus.IN_PROGRESS, "w1", EventType.TASK_STARTED)
    led.add_note("a", NoteKind.FINDING, "the cache is cold", "w1")
    led.transition("a", TaskStatus.DONE, "supervisor", EventType.TASK_COMPLETED)
    led.update_task("b", "operator", title="B2", tags=["docs"], priority=2)
    a, b = led.task("a"), led.task("b")
    assert (a.status, a.assignee, a.attempts[0].outcome.value) == (TaskStatus.DONE, "w1", "done")
    assert a.notes[0].text == "the cache is cold" and a.notes[0].author == "w1"
    assert (b.title, b.tags, b.priority) == ("B2", ["docs"], 2)
    assert b.is_ready({t.id for t in led.board().values() if t.status == TaskStatus.DONE})
    assert [e.type for e in led.events(task="a", types=[EventType.TASK_COMPLETED])] == [EventType.TASK_COMPLETED]
    assert led.board() == full_board(led)


def test_refusals_name_the_problem_and_change_nothing(led: Ledger) -> None:
    led.add_tasks([Task(id="a", title="A"), Task(id="b", title="B", blocked_by=["a"])], "operator")
    led.transition("a", TaskStatus.DONE, "operator")
    before = led.last_seq()
    with pytest.raises(InvalidTransition, match="cannot go from done to in_progress.*reopen it first"):
        led.transition("a", TaskStatus.IN_PROGRESS, "operator")
    with pytest.raises(UnknownTask, match="no task 'zzz' on the board: see `swarm board`"):
        led.transition("zzz", TaskStatus.DONE, "operator")
    with pytest.raises(UnknownTask):
        led.task("zzz")
    with pytest.raises(DuplicateTask, match="'a' is already taken"):
        led.add_task(Task(id="a", title="again"), "operator")
    with pytest.raises(DuplicateTask, match="'c' is already taken"):
        led.add_tasks([Task(id="c", title="C"), Task(id="c", title="C again")], "operator")
    with pytest.raises(LedgerError, match="blocked by unknown task 'nope'"):
        led.add_tasks([Task(id="c", title="C"), Task(id="d", title="D", blocked_by=["nope"])], "operator")
    with pytest.raises(LedgerError, match="dependency cycle: c -> d -> c"):
        led.add_tasks([Task(id="c", title="C", blocked_by=["d"]), Task(id="d", title="D", blocked_by=["c"])], "op")
    with pytest.raises(LedgerError, match="dependency cycle: a -> b -> a"):
        led.update_task("a", "operator", blocked_by=["b"])
    with pytest.raises(LedgerError, match="blocked by unknown task 'nope'"):
        led.update_task("a", "operator", blocked_by=["nope"])
    with pytest.raises(LedgerError, match="transition"):
        led.update_task("a", "operator", status="open")
    with pytest.raises(LedgerError, match="title"):
        led.update_task("a", "operator", title="")
    with pytest.raises(LedgerError, match="transition"):
        led.append(EventType.TASK_UPDATED, "operator", "a", status="open")
    with pytest.raises(LedgerError, match="add_task"):
        led.append(EventType.TASK_CREATED, "operator", "x")
    with pytest.raises(LedgerError, match="unknown task status 'later'"):
        led.transition("a", "later", "operator")  # type: ignore[arg-type]
    with pytest.raises(LedgerError, match="not JSON"):
        led.append(EventType.CUSTOM, "operator", blob=object())
    with pytest.raises(InvalidName):
        led.append(EventType.CUSTOM, "Not An Agent")
    assert led.last_seq() == before
    assert set(led.board()) == {"a", "b"}


def test_torn_line_is_skipped_then_repaired(led: Ledger, swarm_home: SwarmHome) -> None:
    led.add_task(Task(id="a", title="A"), "operator")
    led.append(EventType.PROGRESS, "w1", "a", "one")
    with open(led.path, "ab") as f:  # a crash in the middle of an append
        f.write(b'{"seq":3,"id":"X","ts":"2030-01-01T00:00:00Z","agent":"w1","type":"progr')
    other = Ledger(swarm_home, durable=False)
    assert [e.seq for e in other.events()] == [1, 2]
    assert other.last_seq() == 2 and set(other.board()) == {"a"}
    event = other.append(EventType.PROGRESS, "w1", "a", "two")
    assert event.seq == 3
    lines = led.path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and [json.loads(line)["seq"] for line in lines[:-1]] == [1, 2, 3]
    assert led.append(EventType.PROGRESS, "w1", "a", "three").seq == 4  # the first instance's cache noticed


def test_corrupt_line_in_the_middle_is_skipped(led: Ledger) -> None:
    led.append(EventType.PROGRESS, "w1", summary="one")
    with open(led.path, "ab") as f:
        f.write(b"not json at all\n")
    assert led.append(EventType.PROGRESS, "w1", summary="two").seq == 2
    assert [e.summary for e in led.events()] == ["one", "two"]


def test_events_since_seq_uses_bisection_correctly(led: Ledger) -> None:
    for i in range(3000):  # enough bytes for several bisection steps
        led.append(EventType.PROGRESS, f"w{i % 3}", summary=f"step {i}")
    for since in (0, 1, 1499, 2998, 2999, 3000, 5000):
        assert [e.seq for e in led.events(since_seq=since)] == list(range(since + 1, 3001))
    assert [e.seq for e in led.events(since_seq=100, agent="w1", limit=3)] == [101, 104, 107]


def test_snapshot_is_used_and_bad_snapshots_are_ignored(led: Ledger, swarm_home: SwarmHome) -> None:
    led.add_task(Task(id="a", title="A"), "operator")
    led.snapshot()
    snap = json.loads((swarm_home.ledger_dir / "board.json").read_text())
    assert (snap["seq"], snap["offset"]) == (1, led.path.stat().st_size) and "a" in snap["tasks"]
    led.transition("a", TaskStatus.DONE, "operator")
    assert led.board()["a"].status == TaskStatus.DONE  # snapshot + tail
    board_file = swarm_home.ledger_dir / "board.json"
    board_file.write_text(json.dumps({**snap, "tasks": {}}))  # a snapshot that lies about what it covers...
    assert Ledger(swarm_home).board() == {}  # ...is trusted by a new reader when it fits the log (so it is read)
    for bad in ('{"seq": 1, "offset"', json.dumps({**snap, "seq": 99, "offset": 10**9, "tasks": {}}),
                json.dumps({**snap, "seq": 2, "tasks": {}}), json.dumps({**snap, "offset": 5, "tasks": {}})):
        board_file.write_text(bad)
        fresh = Ledger(swarm_home).board()
        assert fresh == full_board(led) and fresh["a"].status == TaskStatus.DONE
    board_file.unlink()
    assert Ledger(swarm_home).board() == full_board(led)


def test_board_is_cached_and_handed_out_tasks_never_change(led: Ledger) -> None:
    led.add_task(Task(id="a", title="A"), "operator")
    before = led.board()
    led.transition("a", TaskStatus.IN_PROGRESS, "operator")
    led.add_note("a", NoteKind.FINDING, "found it", "operator")
    after = led.board()
    assert before["a"].status == TaskStatus.OPEN and before["a"].notes == []
    assert after["a"].status == TaskStatus.IN_PROGRESS and [n.text for n in after["a"].notes] == ["found it"]
    assert after == full_board(led)


def test_long_tail_makes_a_reader_write_a_snapshot(swarm_home: SwarmHome) -> None:
    led = Ledger(swarm_home, durable=False, snapshot_every=50)
    led.add_task(Task(id="a", title="A"), "operator")
    for i in range(60):
        led.append(EventType.PROGRESS, "w1", "a", f"step {i}")
    assert not (swarm_home.ledger_dir / "board.json").exists()
    led.board()
    assert json.loads((swarm_home.ledger_dir / "board.json").read_text())["seq"] == 61
    assert led.board() == full_board(led)


# -- the property: snapshot + tail == full replay ----------------------------------------------------------------

TASK_IDS = ["a", "b", "c", "d"]
AGENTS = ["w1", "w2"]
op = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(["e", "f"]), st.lists(st.sampled_from(TASK_IDS + ["e", "f"]), max_size=2)),
    st.tuples(st.just("status"), st.sampled_from(TASK_IDS), st.sampled_from(list(TaskStatus)),
              st.sampled_from([EventType.TASK_UPDATED, EventType.TASK_ASSIGNED, EventType.TASK_COMPLETED,
                               EventType.TASK_FAILED, EventType.TASK_CHECKPOINT])),
    st.tuples(st.just("note"), st.sampled_from(TASK_IDS), st.sampled_from(list(NoteKind)), st.text(min_size=1)),
    st.tuples(st.just("feed"), st.sampled_from(TASK_IDS), st.sampled_from(
        [EventType.FINDING, EventType.QUESTION, EventType.BLOCKER_FOUND, EventType.PROGRESS]), st.text()),
    st.tuples(st.just("fields"), st.sampled_from(TASK_IDS), st.text(min_size=1, max_size=20), st.integers(-5, 5)),
    st.tuples(st.just("register"), st.sampled_from(AGENTS), st.sampled_from(["worker", "reviewer"])),
    st.tuples(st.just("agent"), st.sampled_from(AGENTS), st.sampled_from(["idle", "busy", "stopped"])),
    st.tuples(st.just("stop"), st.sampled_from(AGENTS), st.sampled_from(["stopped", "dead"])),
    st.tuples(st.just("snapshot")),
    st.tuples(st.just("torn")),
)


def run_op(led: Ledger, step: tuple) -> None:
    kind, *args = step
    try:
        if kind == "add":
            led.add_task(Task(id=args[0], title=f"task {args[0]}", blocked_by=args[1]), "operator")
        elif kind == "status":
            task_id, status, event_type = args
            led.transition(task_id, status, "supervisor", event_type, worker="w1", reason="r")
        elif kind == "note":
            led.add_note(args[0], args[1], args[2], "w1")
        elif kind == "feed":
            led.append(args[1], "w2", args[0], args[2])
        elif kind == "fields":
            led.update_task(args[0], "operator", title=args[1], priority=args[2], assignee="w2")
        elif kind == "register":
            led.register_agent(RegistryEntry(name=args[0], role=args[1], started=FIXED), "supervisor")
        elif kind == "agent":
            led.update_agent(args[0], "supervisor", status=args[1], task="a")
        elif kind == "stop":
            led.append(EventType.AGENT_STOPPED, "supervisor", name=args[0], status=args[1])
        elif kind == "snapshot":
            led.snapshot()
        elif kind == "torn":
            with open(led.path, "ab") as f:
                f.write(b'{"seq": 999, "trunc')
    except (LedgerError, InvalidTransition):
        pass  # refused changes are part of the mix: they must leave no trace


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(op, min_size=5, max_size=40), snapshot_every=st.integers(1, 8))
def test_snapshot_plus_tail_equals_full_replay(steps: list[tuple], snapshot_every: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = SwarmHome(Path(tmp) / "home")
        writer = Ledger(home, durable=False, clock=lambda: FIXED)
        reader = Ledger(home, durable=False, clock=lambda: FIXED, snapshot_every=snapshot_every)
        writer.add_tasks([Task(id=t, title=t, blocked_by=["a"] if t == "b" else []) for t in TASK_IDS], "operator")
        for step in steps:
            run_op(writer, step)
            reader.board()  # reads at random points write snapshots of their own
        events = [e for _, e in feed.read_events(writer.path) if e is not None]
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        fresh = Ledger(home, durable=False, clock=lambda: FIXED)
        assert fresh.board() == board_fold.fold(events) == reader.board()
        liveness = (home.run_dir / "heartbeats", FIXED, fresh.stale_after)
        assert fresh.registry() == registry_fold.with_liveness(registry_fold.fold(events), *liveness)

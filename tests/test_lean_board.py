"""The lean board reader (`swarmd.ledger.lean`) gives what the models give, byte for byte, or says it is unsure;
and `swarm board --json` / `swarm status` answer on it without the click app when they can."""

import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import TypeAdapter

from protocol.agent import RegistryEntry
from protocol.event import Event, EventType
from protocol.task import Attempt, Check, Note, NoteKind, Task, TaskStatus, ValidationSpec
from swarmd import entry
from swarmd.cli import main as app
from swarmd.home import SwarmHome, init_home
from swarmd.ledger import board as board_fold
from swarmd.ledger import lean
from swarmd.ledger.log import Ledger

TASKS = TypeAdapter(list[Task])
T0 = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def _model_board(home: SwarmHome) -> bytes:
    return TASKS.dump_json(list(Ledger(home, durable=False).board().values()), indent=2)


def _lean_board(home: SwarmHome) -> bytes:
    return lean.dump_json(list(lean.read_board(home.ledger_dir).values()))


def _raw(home: SwarmHome, kind: str, task: str | None, /, **detail: Any) -> None:
    """Append one event line as the ledger writes it, bypassing the ledger's rules (as a crash, an old version
    or a hand edit might leave it)."""
    led = Ledger(home, durable=False)
    seq = led.last_seq() + 1
    event = Event(seq=seq, ts=T0 + timedelta(seconds=seq), agent="w1", type=kind, task=task, summary=f"{kind}!",
                  detail=detail)
    with open(led.path, "ab") as f:
        f.write(event.model_dump_json().encode() + b"\n")


def _stamp(home: SwarmHome) -> None:
    """Let the lean path answer for this home: the models validate its swarm.toml (as any `swarm` command does)."""
    done = CliRunner().invoke(app, ["board", "--json", "--home", str(home.root)])
    assert done.exit_code == 0, done.output


def _busy_history(led: Ledger) -> None:
    """Tasks taken through their lives by the ledger's own API: attempts failed, abandoned, checkpointed and
    done, retried, edited, cancelled, with notes from every source."""
    spec = ValidationSpec(checks=[Check(kind="command", run="true", timeout=5.5), Check(kind="files_exist",
                                                                                    paths=["a"])])
    led.add_tasks([Task(id="t-1", title="first \u00e9 \u2713", description="line\n\x1b[31mred", tags=["x"]),
                   Task(id="t-2", title="second", blocked_by=["t-1"], validation=spec, timeout=90.5,
                        metadata={"k": [1, 2.5, None, {"deep": True}]}),
                   Task(id="t-3", title="third", priority=-2, max_attempts=2),
                   Task(id="t-4", title="fourth")], "operator")
    for attempt, worker in ((1, "w1"), (2, "w2")):
        led.transition("t-1", TaskStatus.ASSIGNED, "supervisor", EventType.TASK_ASSIGNED, worker=worker,
                       attempt=attempt)
        led.transition("t-1", TaskStatus.IN_PROGRESS, worker, EventType.TASK_STARTED)
        led.append(EventType.PROGRESS, worker, "t-1", "halfway")
        led.append(EventType.FINDING, worker, "t-1", "found it", text="a finding")
        led.append(EventType.QUESTION, worker, "t-1", "a question?")
        led.transition("t-1", TaskStatus.OPEN, "supervisor", EventType.TASK_FAILED, reason=f"tests failed {attempt}")
    led.transition("t-1", TaskStatus.BLOCKED, "supervisor")
    led.retry(["t-1"], "operator")
    led.transition("t-1", TaskStatus.ASSIGNED, "supervisor", EventType.TASK_ASSIGNED, worker="w3")
    led.transition("t-1", TaskStatus.VALIDATING, "w3", EventType.TASK_VALIDATING)
    led.transition("t-1", TaskStatus.DONE, "supervisor", EventType.TASK_COMPLETED, reason="")
    led.add_note("t-2", NoteKind.BLOCKER, "waiting on \u00fcber", "operator")
    led.update_task("t-2", "operator", title="second, renamed", tags=["y", "z"], priority=3)
    led.transition("t-3", TaskStatus.ASSIGNED, "supervisor", EventType.TASK_ASSIGNED, worker="w4", attempt=1)
    led.transition("t-3", TaskStatus.OPEN, "supervisor", EventType.TASK_FAILED, outcome="abandoned", reason="pane died")
    led.transition("t-3", TaskStatus.ASSIGNED, "supervisor", EventType.TASK_ASSIGNED, worker="w4", attempt=2)
    led.transition("t-3", TaskStatus.OPEN, "supervisor", EventType.TASK_CHECKPOINT, reason="context high")
    led.transition("t-3", TaskStatus.ASSIGNED, "supervisor", EventType.TASK_ASSIGNED, worker="w5")
    led.transition("t-3", TaskStatus.OPEN, "operator", summary="reopened by hand")
    led.append(EventType.BLOCKER_FOUND, "w5", "t-3", "stuck")
    led.append(EventType.COST_UPDATE, "w5", "t-3", "cost", delta={"cost_usd": 0.25})
    led.transition("t-4", TaskStatus.CANCELLED, "operator")
    led.register_agent(RegistryEntry(name="supervisor", role="supervisor"), "supervisor")


def _every_kind(home: SwarmHome, task: str) -> None:
    """One raw event of every kind about `task`, each with every detail field any fold reads."""
    for kind in EventType:
        new = Task(id=f"{task}-{kind.value}", title="made by a raw event").model_dump(mode="json")
        _raw(home, kind.value, task, status="in_progress", worker="w9", attempt=7, reason="why not",
             outcome="abandoned", kind="finding", text=f"{kind.value} says", task=new,
             fields={"title": f"retitled by {kind.value}", "profile": "p", "not_a_field": 1})
        _raw(home, kind.value, f"{task}-{kind.value}", status="open")  # the task a task_created made, if any


@pytest.fixture
def home(tmp_path: Path) -> SwarmHome:
    swarm = SwarmHome(tmp_path / ".swarm")
    init_home(swarm)
    return swarm


def test_the_lean_fold_knows_the_models_vocabulary() -> None:
    assert lean.EVENT_TYPES == {t.value for t in EventType}, "an event type the lean fold does not know"
    assert not lean.STATE_EVENTS & lean.OTHER_EVENTS
    assert lean.TASK_FIELDS == tuple(Task.model_fields)
    assert lean.NOTE_FIELDS == tuple(Note.model_fields)
    assert lean.ATTEMPT_FIELDS == tuple(Attempt.model_fields)
    assert lean.TASK_STATUSES == {s.value for s in TaskStatus}
    assert lean.NOTE_KINDS == {k.value for k in NoteKind}
    assert lean.FEED_NOTES == {t.value: k.value for t, k in board_fold.FEED_NOTES.items()}
    assert lean.ENDING_OUTCOMES == {t.value: o.value for t, o in board_fold._ENDING_OUTCOMES.items()}


def test_a_created_task_in_the_models_own_form_is_taken_as_it_is(home: SwarmHome) -> None:
    schema = json.dumps(Task.model_json_schema(), sort_keys=True).encode()
    assert hashlib.sha256(schema).hexdigest() == lean.TASK_SCHEMA_SHA256, "Task changed: review is_dumped_task"
    led = Ledger(home, durable=False)
    _busy_history(led)
    dumped = [t.model_dump(mode="json") for t in led.board().values()]
    assert all(map(lean.is_dumped_task, dumped))
    odd = [{**dumped[1], "timeout": 90}, {**dumped[1], "status": "nope"}, {**dumped[0], "title": ""},
           {k: v for k, v in dumped[0].items() if k != "metadata"}, {**dumped[0], "created": "2031-01-01T00:00:00"},
           {**dumped[0], "blocked_by": ["bad id"]}, {**dumped[0], "priority": True}, None,
           {**dumped[1], "validation": {"checks": [{**dumped[1]["validation"]["checks"][0], "timeout": 5}],
                                        "workdir": None}}]
    for task in odd:  # each one the models would take otherwise, or refuse
        assert not lean.is_dumped_task(task), task


@pytest.mark.parametrize("big_snapshot", [lean.BIG_SNAPSHOT, 0], ids=["json", "pydantic-core"])
def test_snapshot_and_tail_of_every_kind_read_alike(home: SwarmHome, big_snapshot: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lean, "BIG_SNAPSHOT", big_snapshot)  # either parser reads the snapshot
    led = Ledger(home, durable=False)
    _busy_history(led)
    led.snapshot()  # what follows is the tail
    _every_kind(home, "t-2")
    led.add_task(Task(id="t-5", title="added in the tail"), "operator")
    led.update_task("t-5", "operator", description="edited in the tail")
    led.transition("t-5", TaskStatus.ASSIGNED, "supervisor", EventType.TASK_ASSIGNED, worker="w6")
    _raw(home, "task_assigned", "t-5", worker=None, attempt="two")  # odd details the models fold anyway
    _raw(home, "note_added", "t-5", kind="nonsense", text="dropped")
    _raw(home, "task_failed", "t-5", status=["not", "a", "status"], reason=None)
    _raw(home, "progress", "no-such-task", status="done")
    six = Task(id="t-6", title="six", created=T0, updated=T0).model_dump(mode="json")  # not in the models' form:
    _raw(home, "task_created", "t-6", task={**six, "timeout": 90, "created": "2031-05-06T07:08:09.123456+00:00"})
    _raw(home, "task_created", "t-7", task={"id": "t-7"})  # refused by the models: no task
    expected = _model_board(home)
    assert _lean_board(home) == expected
    assert json.loads(expected)[1]["title"] == "retitled by task_updated"  # the tail did reach the board
    assert json.loads(expected)[-1]["timeout"] == 90.0 and b'"timeout": 90.0' in expected
    (home.ledger_dir / "board.json").unlink()  # no snapshot: the whole log is the tail
    assert _lean_board(home) == _model_board(home) == expected


def test_what_the_lean_reader_cannot_vouch_for_is_left_to_the_models(home: SwarmHome) -> None:
    led = Ledger(home, durable=False)
    _busy_history(led)
    led.snapshot()
    snapshot = json.loads((home.ledger_dir / "board.json").read_text())
    del snapshot["tasks"]["t-2"]["retry_from"]  # a snapshot written before a field was added
    (home.ledger_dir / "board.json").write_text(json.dumps(snapshot))
    with pytest.raises(lean.Unsure):
        lean.read_board(home.ledger_dir)
    led.snapshot()
    with open(led.path, "ab") as f:  # a time the models would write back otherwise
        f.write(b'{"seq":999,"ts":"2031-01-01T00:00:00+00:00","agent":"w","type":"progress","task":"t-2"}\n')
    with pytest.raises(lean.Unsure):
        lean.read_board(home.ledger_dir)
    _stamp(home)
    assert not entry.answer(["board", "--json", "--home", str(home.root)])


def test_board_json_answers_as_the_app_does(home: SwarmHome, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    led = Ledger(home, durable=False)
    _busy_history(led)
    led.snapshot()
    led.append(EventType.PROGRESS, "w1", "t-2", "after the snapshot")
    _stamp(home)
    for args in (["board", "--json"], ["board", "--json", "--status", "open", "--status=done"],
                 ["board", "--tag", "y", "--json"]):
        assert entry.answer([*args, "--home", str(home.root)])
        lean_out = capsysbinary.readouterr().out
        model = CliRunner().invoke(app, [*args, "--home", str(home.root)])
        assert model.exit_code == 0 and lean_out == model.stdout_bytes
    assert len(json.loads(lean_out)) == 1


def test_status_answers_as_the_app_does_until_there_are_workers(
        home: SwarmHome, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    led = Ledger(home, durable=False)
    _busy_history(led)  # its registry holds the supervisor alone: no worker to show
    (home.run_dir / "dispatch-paused").write_text("operator\n")
    _stamp(home)
    shown = []
    for args in (["status"], ["status", "--json"]):
        assert entry.answer([*args, "--home", str(home.root)])
        shown.append(capsysbinary.readouterr().out)
        model = CliRunner().invoke(app, [*args, "--home", str(home.root)])
        assert model.exit_code == 0 and shown[-1] == model.stdout_bytes
    assert b"dispatch paused" in shown[0] and json.loads(shown[1])["tasks"] == {"done": 1, "open": 2, "cancelled": 1}
    led.register_agent(RegistryEntry(name="w1", role="worker"), "supervisor")
    assert not entry.answer(["status", "--json", "--home", str(home.root)])  # its pane is tmux's to tell


@pytest.mark.parametrize("args", [["board"], ["board", "--json", "--watch"], ["status", "--watch"],
                                  ["status", "--home"], ["board", "--json", "--status", "bogus"],
                                  ["board", "--json", "--tag", "a", "--tag", "b"], ["status", "-h"], ["feed"]])
def test_other_command_lines_go_to_the_app(args: list[str]) -> None:
    assert entry.parse(args) is None


def test_a_changed_swarm_toml_is_validated_again(home: SwarmHome) -> None:
    _stamp(home)
    assert entry.usable_home(str(home.root)) == home
    home.config_file.write_text(home.config_file.read_text() + "\nmax_workers = 0\n")
    assert entry.usable_home(str(home.root)) is None
    done = subprocess.run([str(Path(sys.executable).parent / "swarm"), "status", "--home", str(home.root)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("swarm: error: ") and "max_workers" in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_running_pid_reads_the_supervisors_lock_as_the_daemon_module_does(home: SwarmHome) -> None:
    from swarmd.supervisor.daemon import running_pid

    code = ("import sys\nfrom pathlib import Path\nfrom swarmd.home import SwarmHome\n"
            "from swarmd.supervisor.daemon import supervisor_lock\n"
            f"with supervisor_lock(SwarmHome(Path({str(home.root)!r}))):\n"
            "    print('held', flush=True)\n    sys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert entry.running_pid(home) == running_pid(home) == holder.pid
    finally:
        holder.communicate("", timeout=30)
    assert entry.running_pid(home) is running_pid(home) is None
    assert os.path.exists(home.run_dir / "supervisor.lock")


def _modules_after(entry_module: str, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `entry_module`'s main() with ARGS in a fresh interpreter; the modules it had imported at its exit."""
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('MODULES', *sorted(sys.modules), file=sys.stderr))\n"
            f"sys.argv = ['prog', *{list(args)!r}]\n"
            f"from {entry_module} import main\nmain()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    line = next(line for line in done.stderr.splitlines() if line.startswith("MODULES "))
    return done, {m.split(".")[0] for m in line.split()[1:]}


def test_the_lean_commands_import_neither_click_nor_the_models(home: SwarmHome) -> None:
    Ledger(home, durable=False).add_task(Task(id="t-1", title="one"), "operator")
    _stamp(home)
    at = ("--home", str(home.root))
    for entry_module, args, allowed in (
            ("swarmd.entry", ("status", *at), set()),
            ("swarmd.entry", ("board", "--json", *at), {"pydantic_core"}),  # its encoder prints the board
            ("agentmail.entry", ("send", *at, "--from", "operator", "--to", "supervisor", "--type", "STEER",
                                 "--field", "text=hi"), set())):
        done, imported = _modules_after(entry_module, *args)
        assert done.returncode == 0, done.stderr
        assert imported & {"click", "pydantic", "pydantic_core", "rich", "libtmux"} == allowed, args

"""The supervisor's mail loop: no message may wedge it, and a backlog drains in linear time, yielding to the
step's other duties as it goes."""

import itertools
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentmail import PostOffice
from agentmail.mailbox import Delivered
from protocol.event import EventType
from protocol.messages import Message, MessageType, make_message
from protocol.task import Task, TaskStatus
from swarmd.home import SwarmHome
from swarmd.ledger.log import MAX_FIELD_CHARS, Ledger
from swarmd.supervisor.loop import Supervisor
from swarmd.supervisor.state import MAIL_BATCH, MAX_HANDLE_TRIES, SUPERVISOR, WorkerState
from conftest import run_cli
from swarmkit import init_home, statuses, write_plan


def test_an_oversized_field_is_cut_in_its_event_and_the_mail_behind_it_goes_on(swarm_home: SwarmHome,
                                                                               tmp_path: Path) -> None:
    """A 600 KB PROGRESS step (accepted by the mail) once made an event over the ledger's limit: the message was
    retried forever, the DONE behind it never handled and the log grew at loop speed."""
    init_home(swarm_home)
    (tmp_path / "body.json").write_text(json.dumps({"step": "x" * 600_000}))
    script = (f"agentmail send --home {swarm_home.root} --from \"$SWARM_AGENT\" --to supervisor --type PROGRESS "
              f"--task big --body-file {tmp_path / 'body.json'} && echo done > out.txt")
    plan = write_plan(tmp_path / "plan.json", [
        {"id": "big", "title": "reports a huge step", "description": script,
         "validation": {"checks": [{"kind": "files_exist", "paths": ["out.txt"]}]}},
        {"id": "after", "title": "runs after it", "description": "true", "blocked_by": ["big"]},
    ])
    result = run_cli("swarm", "run", str(plan), "--home", str(swarm_home.root), "--wait", "--timeout", "60s",
                     timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(statuses(swarm_home).values()) == {TaskStatus.DONE}
    progress = [e for e in Ledger(swarm_home).events() if e.type == EventType.PROGRESS and e.task == "big"]
    assert len(progress) == 1
    step = progress[0].detail["step"]
    assert len(step) < MAX_FIELD_CHARS + 200 and progress[0].detail["msg"] in step, "cut, naming the message"
    assert len(progress[0].summary) <= 1000
    log = swarm_home.logs_dir / "supervisor.log"
    assert not log.exists() or log.stat().st_size < 50_000, "no error logged at loop speed"


class _Refusing(Supervisor):
    """A supervisor whose PROGRESS handler always fails: any handler may meet a bug or an input it cannot take."""

    def on_progress(self, msg: Message) -> None:
        raise RuntimeError(f"cannot handle {msg.id}")


def _send(home: SwarmHome, kind: MessageType, body: dict) -> Message:
    return PostOffice(home.root, durable=False).send(make_message(kind, "w1", SUPERVISOR, body))


def test_a_message_that_keeps_failing_is_set_aside_and_the_mail_behind_it_is_handled(
        swarm_home: SwarmHome, caplog: pytest.LogCaptureFixture) -> None:
    init_home(swarm_home)
    supervisor = _Refusing(swarm_home)
    PostOffice(swarm_home.root, durable=False).register("w1", role="worker")
    poison = _send(swarm_home, MessageType.PROGRESS, {"task": "t", "step": "boom"})
    steer = _send(swarm_home, MessageType.STEER, {"task": "t", "text": "after the poison"})
    caplog.set_level(logging.ERROR, logger="swarmd.supervisor")
    for _ in range(MAX_HANDLE_TRIES + 5):
        supervisor.handle_mail()
    assert supervisor.mailbox.list() == [], "nothing is left unread"
    assert [name for name, _ in supervisor.mailbox.bad()] and poison.id in supervisor.mailbox.bad()[0][0]
    assert "could not handle it 3 times" in supervisor.mailbox.bad()[0][1]
    steer_events = [e for e in Ledger(swarm_home).events() if e.detail.get("msg") == steer.id]
    assert len(steer_events) == 1, "the message behind the poison was handled, once"
    assert len([r for r in caplog.records if "could not handle" in r.getMessage()]) == 1, "logged once"
    supervisor.checks.shutdown()


def test_a_repeated_step_error_is_logged_once_with_a_count(swarm_home: SwarmHome,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    init_home(swarm_home)
    supervisor = Supervisor(swarm_home)

    def broken() -> None:
        raise OSError("the same fault every time")

    supervisor.step = broken  # type: ignore[method-assign]
    caplog.set_level(logging.ERROR, logger="swarmd.supervisor")
    for _ in range(200):
        supervisor.guarded_step()
    supervisor.errors.clear()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "199 more times" in messages[1]
    custom = [e for e in Ledger(swarm_home).events() if "supervisor error" in e.summary]
    assert len(custom) == 1
    supervisor.checks.shutdown()


def test_a_backlog_drains_in_bounded_batches_and_a_step_still_dispatches(swarm_home: SwarmHome) -> None:
    """20,000 PROGRESS messages once held up a DONE for minutes, and no dispatch or timer ran meanwhile."""
    init_home(swarm_home)
    Ledger(swarm_home, durable=False).add_task(Task(id="t", title="ready", description="true"), "operator")
    supervisor = Supervisor(swarm_home)
    post = PostOffice(swarm_home.root, durable=False)
    post.register("flood", role="worker")
    backlog = 3 * MAIL_BATCH + 10
    for i in range(backlog):
        post.send(make_message(MessageType.PROGRESS, "flood", SUPERVISOR, {"task": "t", "step": f"s{i}"}))
    supervisor.step()
    # The step dispatches `t`: its worker's own ACCEPTED and DONE may arrive meanwhile, so count the flood's mail.
    def flood() -> list[Delivered]:
        return [d for d in supervisor.mailbox.list() if d.message.sender == "flood"]
    assert len(flood()) == backlog - MAIL_BATCH, "one bounded batch a step"
    assert Ledger(swarm_home).task("t").status != TaskStatus.OPEN, "the same step went on to dispatch"
    assert supervisor.wake.is_set(), "the next step comes at once"
    rounds = 1
    while supervisor.handle_mail():
        rounds += 1
    assert rounds == 3 and flood() == []
    steps = [e.detail["step"] for e in Ledger(swarm_home).events() if e.type == EventType.PROGRESS]
    assert steps == [f"s{i}" for i in range(backlog)], "in order, each once"
    supervisor.checks.shutdown()


def test_the_events_an_accepted_and_a_done_cause_say_when_the_supervisor_read_them(swarm_home: SwarmHome) -> None:
    """The time from a worker's report to its handling is in the ledger (the benchmark's ready -> ACCEPTED
    segments read it): the event a message causes carries `read_at`, when the step read the mailbox."""
    init_home(swarm_home)
    start, ticks = datetime.now(UTC), itertools.count(1)
    supervisor = Supervisor(swarm_home, clock=lambda: start + timedelta(seconds=next(ticks)))
    supervisor.ledger.add_task(Task(id="t", title="reported", description="true"), "operator")
    supervisor.ledger.transition("t", TaskStatus.ASSIGNED, SUPERVISOR, EventType.TASK_ASSIGNED, worker="w1",
                                 attempt=1)
    supervisor.workers["w1"] = WorkerState(name="w1", task="t", attempt=1, session="s-w1", started_at=0.0)
    PostOffice(swarm_home.root, durable=False).register("w1", role="worker")
    for kind, body, caused in ((MessageType.ACCEPTED, {"task": "t"}, EventType.TASK_STARTED),
                               (MessageType.DONE, {"task": "t", "summary": "ok"}, EventType.TASK_VALIDATING)):
        sent = PostOffice(swarm_home.root, durable=False).send(make_message(kind, "w1", SUPERVISOR, body))
        supervisor.handle_mail()
        event = next(e for e in Ledger(swarm_home).events() if e.type == caused)
        assert event.detail["msg"] == sent.id
        read_at = datetime.fromisoformat(event.detail["read_at"])
        assert sent.ts <= read_at < event.ts, "read after it was sent, before the event it caused was written"
    supervisor.checks.shutdown()

"""The worker's start-up path: its reports are the bytes the models write, and it loads no model to write them."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentmail import PostOffice
from protocol.messages import MessageType, Origin, make_message, parse_message
from swarmd.home import SwarmHome
from swarmd.workers.fastpath import Reports, encode, take_assignment
from swarmkit import init_home

AWKWARD_TITLES = ["plain", "", 'quotes " and \\ backslash', "tab\tnew\nline \x01 \x1b[31m \x7f",
                  "ünïcödé 漢字 😀 \u2028\u2029 \ufeff", "x" * 5000]
AWKWARD_TASKS = ["t", "A.b_c-9", "9" * 128, "task.with.dots"]
ORIGIN = {"pid": 4321, "uid": 1000, "host": "höst-1"}


def _with_models(kind: str, task: str, body: dict[str, object], message_id: str, ts: datetime) -> bytes:
    message = make_message(kind, "w-1", "supervisor", {"task": task, **body}, thread=task, id=message_id, ts=ts)
    return message.model_copy(update={"origin": Origin(**ORIGIN)}).to_json().encode()


@pytest.mark.parametrize("task", AWKWARD_TASKS)
@pytest.mark.parametrize("title", AWKWARD_TITLES)
def test_accepted_is_the_models_bytes(task: str, title: str) -> None:
    for ts in (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), datetime(2026, 1, 2, 3, 4, 5, 6789, tzinfo=UTC)):
        body = {"title": title, "started_at": ts}
        quick = encode("ACCEPTED", "w-1", task, body, message_id="01ABC", ts=ts, origin=ORIGIN)
        assert quick == _with_models("ACCEPTED", task, body, "01ABC", ts)
        assert parse_message(quick).body.title == title


@pytest.mark.parametrize(("kind", "body"), [
    ("DONE", {}),
    ("DONE", {"summary": "`sh /p/w-script.sh` exited 0 ✓"}),
    ("FAILED", {"failure": "ERROR", "reason": "exit code 3\ncause: the disk is on fire 🔥", "attempts": 2}),
    ("FAILED", {"failure": "LAUNCH_ERROR", "reason": "cannot start 'nope'", "attempts": 1}),
])
def test_done_and_failed_are_the_models_bytes(kind: str, body: dict[str, object]) -> None:
    ts = datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=UTC)
    quick = encode(kind, "w-1", "t.1", body, message_id="01XYZ", ts=ts, origin=ORIGIN)
    assert quick == _with_models(kind, "t.1", body, "01XYZ", ts)


def test_reports_land_in_the_supervisors_mailbox_and_read_back(home_dir: Path) -> None:
    post = PostOffice(home_dir)
    post.register("supervisor", role="supervisor")
    reports = Reports(home_dir, "w-1", "t.1", durable=True)
    assert reports.send("ACCEPTED", title="ünï 😀", started_at=datetime.now(UTC))
    assert reports.send("DONE", summary="ok")
    unread = post.mailbox("supervisor").list()
    assert [(d.message.type, d.message.sender, d.message.task) for d in unread] == [
        (MessageType.ACCEPTED, "w-1", "t.1"), (MessageType.DONE, "w-1", "t.1")]
    assert unread[0].message.body.title == "ünï 😀" and unread[0].message.origin.pid == os.getpid()
    assert [d.seq for d in unread] == [1, 2]


def test_text_that_is_not_utf8_is_left_to_the_models(home_dir: Path) -> None:
    PostOffice(home_dir).register("supervisor", role="supervisor")
    reports = Reports(home_dir, "w-1", "t.1", durable=False)
    assert reports.send("DONE", summary="argv byte \udcff") is False
    assert PostOffice(home_dir).mailbox("supervisor").list() == []


def test_no_supervisor_mailbox_is_left_to_the_models(home_dir: Path) -> None:
    PostOffice(home_dir).register("w-1")
    assert Reports(home_dir, "w-1", "t.1", durable=False).send("DONE") is False


def test_the_assignment_is_claimed_and_other_mail_left_unread(home_dir: Path) -> None:
    post = PostOffice(home_dir)
    mailbox = post.register("w-1")
    post.send(make_message(MessageType.STEER, "supervisor", "w-1", {"text": "hurry"}))
    post.send(make_message(MessageType.TASK_ASSIGN, "supervisor", "w-1", {"task": "other", "title": "not ours"}))
    post.send(make_message(MessageType.TASK_ASSIGN, "supervisor", "w-1",
                           {"task": "t.1", "title": "ours 😀", "description": "echo 'hi'\nexit 0"}, thread="t.1"))
    assigned = take_assignment(mailbox.path, "t.1")
    assert assigned is not None and (assigned.title, assigned.description) == ("ours 😀", "echo 'hi'\nexit 0")
    assert [d.message.type for d in mailbox.list()] == [MessageType.STEER, MessageType.TASK_ASSIGN]
    assert take_assignment(mailbox.path, "t.1") is None, "claimed twice"


def test_an_assignment_with_a_lone_surrogate_is_left_to_the_models(home_dir: Path) -> None:
    mailbox = PostOffice(home_dir).register("w-1")
    good = make_message(MessageType.TASK_ASSIGN, "supervisor", "w-1", {"task": "t", "title": "X"}, thread="t")
    raw = good.to_json().replace('"title":"X"', '"title":"\\ud800"')
    (mailbox.path / "new" / f"{1:012d}-{good.id}.json").write_text(raw)
    assert take_assignment(mailbox.path, "t") is None
    assert len(os.listdir(mailbox.path / "new")) == 1


def test_the_worker_starts_without_pydantic_click_or_rich(swarm_home: SwarmHome, tmp_path: Path) -> None:
    """`python -X importtime -m swarmd.worker` names every module the wrapper imports, on its stderr."""
    init_home(swarm_home)
    post = PostOffice(swarm_home.root)
    post.register("supervisor", role="supervisor")
    post.register("w-1")
    title = "ünï \"quoted\" 😀 \x1b[1m"
    post.send(make_message(MessageType.TASK_ASSIGN, "supervisor", "w-1",
                           {"task": "t.1", "title": title, "description": "echo ran > ran.txt"}, thread="t.1"))
    env = {**os.environ, "SWARM_HOME": str(swarm_home.root), "SWARM_AGENT": "w-1", "SWARM_TASK": "t.1",
           "SWARM_HEARTBEAT_INTERVAL": "30", "SWARM_DURABLE": "1"}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "swarmd.worker", "--script"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "swarmd.workers.wrapper" in imported
    heavy = sorted(m for m in imported if m.split(".")[0] in {"pydantic", "pydantic_core", "click", "rich"})
    assert heavy == []
    assert (tmp_path / "ran.txt").read_text() == "ran\n"
    reports = post.mailbox("supervisor").list()
    assert [d.message.type for d in reports] == [MessageType.ACCEPTED, MessageType.DONE]
    assert reports[0].message.body.title == title
    assert (swarm_home.run_dir / "heartbeats" / "w-1").exists()
    assert json.loads(reports[1].path.read_bytes())["origin"]["pid"] != os.getpid()

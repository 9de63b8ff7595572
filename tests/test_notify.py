"""Notifications from a running swarm: a webhook and a command told once per selected event, failures in the
feed, and a receiver that never answers holding nothing up."""

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import run_cli
from swarmkit import events, init_home, statuses, wait_until, write_plan

from protocol.event import Event, EventType
from protocol.task import Task, TaskStatus
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.config import Notify
from swarmd.supervisor.notify import Notifier, classify

ASK = ('agentmail send --from "$SWARM_AGENT" --to supervisor --type HELP_REQUEST --task {task} '
       '--field question="which port?" >/dev/null')
BLOCKER = 'swarm feed publish "the API is down" --agent "$SWARM_AGENT" --type blocker_found --task {task} >/dev/null'


class Receiver:
    """A webhook receiver on 127.0.0.1: records each POSTed JSON body."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def kinds(self) -> list[str]:
        return sorted(b["event"] for b in self.bodies)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def notify_toml(**values: object) -> str:
    return "\n[notify]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


def run_plan(home: SwarmHome, tmp_path: Path, tasks: list[dict]) -> None:
    plan = write_plan(tmp_path / "plan.json", tasks)
    result = run_cli("swarm", "run", str(plan), "--home", str(home.root))
    assert result.returncode == 0, result.stderr


def test_webhook_and_command_get_one_notification_per_selected_event(swarm_home: SwarmHome, tmp_path: Path,
                                                                     receiver: Receiver) -> None:
    init_home(swarm_home, max_workers=2)
    told = tmp_path / "told.jsonl"
    selected = ["question", "task_failed", "task_blocked", "plan_done"]  # not blocker_found
    with swarm_home.config_file.open("a") as f:
        f.write(notify_toml(events=selected, webhook=receiver.url, command=f"cat >> {told}; echo >> {told}"))
    run_plan(swarm_home, tmp_path, [
        {"id": "asks", "title": "asks", "description": ASK.format(task="asks")},
        {"id": "stuck", "title": "stuck", "description": BLOCKER.format(task="stuck")},
        {"id": "breaks", "title": "breaks", "description": "exit 3", "max_attempts": 2},
    ])
    home = ["--home", str(swarm_home.root)]
    wait_until(lambda: "plan_done" in receiver.kinds(), 60, "the plan_done notification")
    wait_until(lambda: told.exists() and "plan_done" in told.read_text(), 30, "the command's plan_done")
    assert run_cli("swarm", "down", *home).returncode == 0

    assert receiver.kinds() == sorted(selected), "one POST per selected event, none for blocker_found"
    by_kind = {b["event"]: b for b in receiver.bodies}
    asked = by_kind["question"]
    assert asked["task"] == "asks" and asked["reason"] == "which port?" and asked["worker"]
    assert asked["action"] == f"answer it: swarm reply {asked['worker']} 'ANSWER'"
    assert by_kind["task_blocked"]["task"] == "breaks" and "swarm retry breaks" in by_kind["task_blocked"]["action"]
    assert by_kind["task_failed"]["task"] == "breaks"
    assert "1 blocked" in by_kind["plan_done"]["reason"] and "2 done" in by_kind["plan_done"]["reason"]
    commanded = [json.loads(line) for line in told.read_text().splitlines() if line.strip()]
    assert commanded == receiver.bodies, "the command got the same JSON on its stdin, in the same order"


def test_a_failing_command_is_reported_and_a_silent_webhook_holds_up_no_dispatch(swarm_home: SwarmHome,
                                                                                   tmp_path: Path) -> None:
    silent = socket.socket()  # accepts connections (the kernel's backlog) and never answers one
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    tries = tmp_path / "tries"
    try:
        init_home(swarm_home, max_workers=1)
        with swarm_home.config_file.open("a") as f:
            f.write(notify_toml(events=["question"], webhook=f"http://127.0.0.1:{silent.getsockname()[1]}/",
                                command=f"echo try >> {tries}; echo refused >&2; exit 3", timeout=120, retries=2,
                                backoff=0.05))
        # Each task asks a question; the second waits on the first: its dispatch comes while the first
        # notification still waits on the silent webhook.
        run_plan(swarm_home, tmp_path, [
            {"id": f"t{i}", "title": f"task {i}", "description": ASK.format(task=f"t{i}"),
             **({"blocked_by": [f"t{i - 1}"]} if i else {})} for i in range(2)])
        wait_until(lambda: set(statuses(swarm_home).values()) == {"done"}, 60, "every task to be done")
        failures = lambda: [e for e in events(swarm_home) if e.detail.get("notify_failed")]  # noqa: E731
        failed = wait_until(lambda: len(failures()) >= 2 and failures(), 60, "the command's failures in the feed")
        assert [(e.task, e.summary) for e in failed] == [
            (f"t{i}", "notification question by command failed after 3 tries: exit 3: refused") for i in range(2)]
        assert tries.read_text().count("try") == 6, "each notification tried 1 + 2 times"
        assert not [e for e in events(swarm_home) if e.detail.get("channel") == "webhook"], "still waiting on it"
    finally:
        assert run_cli("swarm", "down", "--home", str(swarm_home.root)).returncode == 0
        silent.close()


@pytest.mark.parametrize("detail", [{"state": "needs_input", "dialog": "Allow edit?"},
                                    {"name": "w1", "fields": {"metadata": {"agent_state": "needs_input",
                                                                           "state_detail": "Allow edit?"}}}])
def test_an_agent_waiting_on_a_dialog_is_needs_input_once(swarm_home: SwarmHome, detail: dict) -> None:
    event = Event(seq=7, agent="w1", type=EventType.AGENT_UPDATED, task="t1", summary="w1 is needs_input",
                  detail=detail)
    kind, worker, reason, action = classify(event) or ("", "", "", "")
    assert (kind, worker, reason) == ("needs_input", "w1", "Allow edit?") and "swarm attach w1" in action
    assert classify(event.model_copy(update={"detail": {"state": "working"}})) is None

    notifier = Notifier(swarm_home, lambda: Notify(command="true"))
    for state in ("working", "needs_input", "needs_input", "working", "needs_input"):  # its usage grew between
        again = {"state": state} if "state" in detail else {
            "name": "w1", "fields": {"metadata": {"agent_state": state, "state_detail": "Allow edit?"}}}
        notifier.look_at(event.model_copy(update={"detail": again}))
    told = []
    while not notifier.outboxes["command"].empty():
        told.append(notifier.outboxes["command"].get().event)
    assert told == ["needs_input", "needs_input"], "once each time it comes to need input"


def test_the_last_task_blocked_is_told_and_so_is_the_plan_done(swarm_home: SwarmHome) -> None:
    ledger = Ledger(swarm_home)
    notifier = Notifier(swarm_home, lambda: Notify(command="true", events=["task_blocked", "plan_done"]))
    told = []

    def look_at(event: Event) -> None:  # as the follower does, just after each append
        notifier.look_at(event)
        while not notifier.outboxes["command"].empty():
            told.append((event.seq, notifier.outboxes["command"].get().event))

    look_at(ledger.add_task(Task(id="only", title="the only task"), "operator"))
    look_at(ledger.transition("only", TaskStatus.ASSIGNED, "supervisor", EventType.TASK_ASSIGNED, worker="w1"))
    blocked = ledger.transition("only", TaskStatus.BLOCKED, "supervisor", EventType.TASK_FAILED, worker="w1",
                                reason="exit 3")
    look_at(blocked)
    assert told == [(blocked.seq, "task_blocked"), (blocked.seq, "plan_done")]

"""The MCP tools, called by the SDK's own client over stdio against a real home with a supervisor running:
their answers match the CLI's --json for the same question, and a worker acts only as itself."""

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from protocol.task import TaskStatus
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.tokens import TOKEN_ENV
from conftest import run_cli
from mcpkit import SWARM, McpSession, ToolError, cli_json, coordinator_env, worker_env
from swarmkit import init_home, wait_until, write_plan

EVERY_TOOL = {"board_create_task", "board_list_tasks", "board_update_task", "board_add_note", "feed_publish",
              "feed_list", "feed_stats", "registry_register", "registry_discover", "registry_heartbeat",
              "registry_list", "swarm_spawn", "swarm_task", "swarm_status", "swarm_read", "swarm_wait",
              "swarm_teardown", "mail_send", "mail_inbox", "mail_read", "mail_ack", "mail_wait",
              "reserve_paths", "release_paths", "list_reservations"}


class Swarm:
    """A home with a supervisor and two workers blocked on FIFOs (tasks `mine` and `theirs`), a coordinator's
    server and the server of the worker holding `mine`."""

    def __init__(self, root: Path) -> None:
        self.home = SwarmHome(root / "home")
        init_home(self.home, max_workers=2)
        self.gates = {}
        tasks = []
        for task in ("mine", "theirs"):
            self.gates[task] = root / f"{task}.gate"
            os.mkfifo(self.gates[task])
            tasks.append({"id": task, "title": f"task {task}", "description": f"cat {self.gates[task]}"})
        plan = write_plan(root / "plan.json", tasks)
        assert run_cli("swarm", "run", str(plan), "--home", str(self.home.root)).returncode == 0
        self.ledger = Ledger(self.home)
        wait_until(lambda: all(self.ledger.task(t).status == TaskStatus.IN_PROGRESS for t in self.gates), 60,
                   "both workers to start")
        self.worker = self.ledger.task("mine").assignee
        self.other = self.ledger.task("theirs").assignee
        self.session = self.ledger.registry()[self.worker].session
        self.coordinator = McpSession(self.home, coordinator_env(self.home))
        self.worker_env = worker_env(self.home, self.session, self.worker)
        self.as_worker = McpSession(self.home, self.worker_env)

    def close(self) -> None:
        try:
            for session in (self.coordinator, self.as_worker):
                session.close()
        finally:
            run_cli("swarm", "down", "--teardown", "--home", str(self.home.root))
            subprocess.run(["tmux", "-S", str(self.home.tmux_socket), "kill-server"], capture_output=True,
                           check=False)

    def cli(self, *args: str) -> Any:
        return cli_json(*args, "--home", str(self.home.root), lines=args[0] == "feed")


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swarm]:
    made = Swarm(tmp_path_factory.mktemp("mcp"))
    try:
        yield made
    finally:
        made.close()


def test_every_tool_is_listed_and_mail_send_takes_the_protocols_schema(swarm: Swarm) -> None:
    tools = swarm.coordinator.tools()
    assert set(tools) == EVERY_TOOL
    schema = tools["mail_send"].input_schema
    assert "DONE" in schema["properties"]["type"]["enum"]
    assert set(schema["$defs"]["DONE_body"]["properties"]) >= {"summary", "files", "commit"}
    assert set(tools["board_create_task"].input_schema["properties"]) == {
        "title", "description", "tags", "createdBy", "blockedBy", "validation"}


def test_board_tools_answer_as_the_cli_does(swarm: Swarm) -> None:
    made = swarm.coordinator.call("board_create_task", {"title": "Build auth service", "tags": ["feature", "auth"],
                                                        "createdBy": "coordinator"})
    assert made["metadata"] == {"dispatch": "coordinator"}, "a coordinator's task is the coordinator's to dispatch"
    assert swarm.coordinator.call("board_list_tasks", {}) == swarm.cli("board")
    assert swarm.coordinator.call("board_list_tasks", {"status": "in_progress"}) == \
        swarm.cli("board", "--status", "in_progress")
    assert [t["id"] for t in swarm.coordinator.call("board_list_tasks", {"assignee": swarm.worker})] == ["mine"]
    with pytest.raises(ToolError) as refused:
        swarm.coordinator.call("board_list_tasks", {"status": "finished"})
    assert len(str(refused.value).splitlines()) == 1 and "status" in str(refused.value)
    updated = swarm.coordinator.call("board_update_task", {"id": made["id"], "fields": {"priority": 3}})
    assert updated == swarm.cli("task", "show", made["id"]) and updated["priority"] == 3
    note = swarm.coordinator.call("board_add_note", {"id": made["id"], "kind": "finding", "text": "uses JWT"})
    assert note == swarm.cli("feed", "--type", "note_added", "-n", "1")[0]
    assert note["agent"] == "coordinator"


def test_feed_and_registry_tools_answer_as_the_cli_does(swarm: Swarm) -> None:
    event = swarm.coordinator.call("feed_publish", {"agent": "coordinator", "type": "finding",
                                                    "summary": "the API needs auth", "detail": "see t-1"})
    assert event == swarm.cli("feed", "-n", "1")[0]
    assert swarm.coordinator.call("feed_list", {"limit": 5}) == swarm.cli("feed", "-n", "5")
    assert swarm.coordinator.call("feed_list", {"agent": "coordinator", "type": "finding"}) == \
        swarm.cli("feed", "--agent", "coordinator", "--type", "finding")
    assert swarm.coordinator.call("feed_stats") == swarm.cli("stats")
    entry = swarm.coordinator.call("registry_register", {"name": "lt-backend", "role": "lieutenant"})
    assert entry["name"] == "lt-backend"
    assert swarm.coordinator.call("registry_discover", {"role": "lieutenant"}) == \
        swarm.cli("registry", "discover", "--role", "lieutenant")
    names = lambda agents: sorted((a["name"], a["role"], a["task"]) for a in agents)  # noqa: E731 - beats move
    assert names(swarm.coordinator.call("registry_list", {"role": "worker"})) == \
        names(swarm.cli("registry", "list", "--role", "worker"))
    assert {a["name"] for a in swarm.coordinator.call("registry_list", {"status": "running", "role": "worker"})} == \
        {swarm.worker, swarm.other}
    assert swarm.as_worker.call("registry_heartbeat") == {"name": swarm.worker, "ok": True}
    status = swarm.coordinator.call("swarm_status")
    expected = swarm.cli("status")
    assert status["supervisor"] == expected["supervisor"] and status["tasks"] == expected["tasks"]
    assert [(w["name"], w["task"], w["pane"]) for w in status["workers"]] == \
        [(w["name"], w["task"], w["pane"]) for w in expected["workers"]]


def test_mail_tools_answer_as_agentmail_does(swarm: Swarm) -> None:
    sent = swarm.coordinator.call("mail_send", {"type": "STEER", "to": ["coordinator"],
                                                "body": {"text": "look at t-1"}, "ack_required": True})
    agentmail = Path(SWARM).with_name("agentmail")
    inbox = subprocess.run([str(agentmail), "inbox", "coordinator", "--home", str(swarm.home.root), "--json"],
                           capture_output=True, text=True, check=True)
    assert swarm.coordinator.call("mail_inbox") == json.loads(inbox.stdout)
    read = swarm.coordinator.call("mail_read", {"messageId": sent["id"]})
    assert read == sent and read["body"] == {"text": "look at t-1"}
    ack = swarm.coordinator.call("mail_ack", {"messageId": sent["id"]})
    assert swarm.coordinator.call("mail_wait", {"types": ["ACK"], "timeoutSeconds": 30}) == ack
    with pytest.raises(ToolError, match="invalid message: body.text: Field required"):
        swarm.coordinator.call("mail_send", {"type": "STEER", "to": ["coordinator"], "body": {}})


def test_reservation_tools_reserve_as_this_agent_and_answer_as_the_cli_does(swarm: Swarm) -> None:
    mine = swarm.as_worker.call("reserve_paths", {"paths": ["src/auth/"]})
    assert [g["agent"] for g in mine["granted"]] == [swarm.worker] and mine["conflicts"] == []
    theirs = swarm.coordinator.call("reserve_paths", {"paths": ["src/auth/jwt.py"]})
    assert [(c["holder"], c["held"]) for c in theirs["conflicts"]] == [(swarm.worker, "src/auth/")]
    assert swarm.coordinator.call("list_reservations") == swarm.cli("reservations")
    assert swarm.as_worker.call("release_paths") == {"released": 1}
    assert [r["agent"] for r in swarm.cli("reservations")] == ["coordinator"]


def test_a_worker_acts_only_as_itself_on_the_tasks_it_holds(swarm: Swarm) -> None:
    with pytest.raises(ToolError, match=f"you are {swarm.worker}: you cannot publish as supervisor"):
        swarm.as_worker.call("feed_publish", {"agent": "supervisor", "type": "task_completed", "summary": "all done"})
    with pytest.raises(ToolError, match=f"task theirs is not {swarm.worker}'s"):
        swarm.as_worker.call("board_add_note", {"id": "theirs", "kind": "blocker", "text": "stop"})
    with pytest.raises(ToolError, match=f"task theirs is not {swarm.worker}'s"):
        swarm.as_worker.call("board_update_task", {"id": "theirs", "status": "cancelled"})
    with pytest.raises(ToolError, match="coordinator's tool"):
        swarm.as_worker.call("swarm_teardown")
    with pytest.raises(ToolError, match="you cannot register supervisor"):
        swarm.as_worker.call("registry_register", {"name": "supervisor"})
    note = swarm.as_worker.call("board_add_note", {"id": "mine", "kind": "finding", "text": "the gate is a FIFO"})
    assert (note["agent"], note["task"]) == (swarm.worker, "mine")
    theirs = swarm.ledger.task("theirs")
    assert theirs.status == TaskStatus.IN_PROGRESS and not theirs.notes


def test_the_workers_token_is_on_no_command_line_and_kept_only_hashed(swarm: Swarm) -> None:
    token = swarm.worker_env[TOKEN_ENV]
    shown = subprocess.run(["tmux", "-S", str(swarm.home.tmux_socket), "show-environment", "-t", swarm.session,
                            TOKEN_ENV], capture_output=True, text=True, check=False)
    assert token not in shown.stdout, "not given to tmux (its argv is public)"
    assert not [p for p in swarm.home.root.rglob("*") if p.is_file() and token.encode() in p.read_bytes()]


def test_a_server_without_the_workers_token_does_not_start(swarm: Swarm) -> None:
    env = {"PATH": os.environ["PATH"], "SWARM_HOME": str(swarm.home.root), "SWARM_AGENT": swarm.worker,
           TOKEN_ENV: "0" * 64}
    done = subprocess.run([SWARM, "mcp"], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"swarm mcp: error: agent {swarm.worker}: missing or wrong "
                                                f"${TOKEN_ENV}; the swarm sets it when it starts a worker"]


def test_a_worker_reports_done_through_mail_send_and_the_task_is_validated(swarm: Swarm) -> None:
    swarm.as_worker.call("mail_send", {"type": "DONE", "to": ["supervisor"], "task": "mine",
                                       "body": {"summary": "finished through the tool"}})
    wait_until(lambda: swarm.ledger.task("mine").status == TaskStatus.DONE, 60, "the DONE to be validated")
    completed = swarm.cli("feed", "--type", "task_completed", "--task", "mine")
    assert len(completed) == 1

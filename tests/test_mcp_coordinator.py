"""The Vers skill's "Example: Full Coordinated Build", run by a coordinator through the MCP tools alone, with
script workers and a supervisor running: create three tasks, spawn three labelled workers, assign and
dispatch, monitor, wait, read, mark done, tear down."""

from pathlib import Path

from protocol.task import TaskStatus
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.workers.tmux import TmuxServer
from conftest import run_cli
from mcpkit import McpSession, ToolError, coordinator_env
from swarmkit import init_home

import pytest

LABELS = ["auth", "api", "tests"]


def test_a_coordinator_runs_the_full_coordinated_build_through_the_tools(swarm_home: SwarmHome,
                                                                         tmp_path: Path) -> None:
    init_home(swarm_home, max_workers=4)
    assert run_cli("swarm", "up", "--home", str(swarm_home.root)).returncode == 0
    tools = McpSession(swarm_home, coordinator_env(swarm_home))
    try:
        assert [a["name"] for a in tools.call("registry_list")] == ["supervisor"]
        assert tools.call("board_list_tasks") == []
        ids = [tools.call("board_create_task", {"title": f"Build {label}", "tags": ["feature", label],
                                                "createdBy": "coordinator"})["id"] for label in LABELS]
        spawned = tools.call("swarm_spawn", {"count": 3, "labels": LABELS, "profile": "script"})
        assert [w["name"] for w in spawned] == [f"worker-{label}" for label in LABELS]
        running = tools.call("registry_list", {"status": "running", "role": "worker"})
        assert sorted(a["name"] for a in running) == sorted(f"worker-{label}" for label in LABELS)
        with pytest.raises(ToolError, match="worker-auth holds no task"):
            tools.call("swarm_task", {"agentId": "auth", "task": "echo too early"})
        for task_id, label in zip(ids, LABELS):
            tools.call("board_update_task", {"id": task_id, "status": "in_progress", "assignee": f"worker-{label}"})
            out = tmp_path / f"{label}.txt"
            given = tools.call("swarm_task", {"agentId": label, "task": f"echo built {label} | tee {out}"})
            assert given["task"] == task_id
        tools.call("feed_list", {"limit": 20})
        assert tools.call("board_list_tasks", {"status": "blocked"}) == []
        assert tools.call("swarm_wait", {"timeoutSeconds": 300}) == {
            "ended": sorted(f"worker-{label}" for label in LABELS), "running": []}
        for label in LABELS:
            assert f"built {label}" in tools.call_text("swarm_read", {"agentId": label})
            assert (tmp_path / f"{label}.txt").read_text() == f"built {label}\n"
        for task_id in ids:
            assert tools.call("board_update_task", {"id": task_id, "status": "done"})["status"] == "done"
        ended = tools.call("swarm_teardown")["ended"]
        assert sorted(ended) == sorted(f"t-worker-{label}" for label in LABELS)
        tools.call("feed_publish", {"agent": "coordinator", "type": "agent_stopped",
                                    "summary": "Swarm teardown complete"})
    finally:
        tools.close()
        run_cli("swarm", "down", "--home", str(swarm_home.root))
    board = Ledger(swarm_home).board()
    assert {t: board[t].status for t in ids} == dict.fromkeys(ids, TaskStatus.DONE)
    assert all(board[t].assignee == f"worker-{label}" for t, label in zip(ids, LABELS)), \
        "the supervisor left the coordinator's tasks to it"
    assert not [n for n in Ledger(swarm_home).registry() if n.startswith("w") and n[1:].isdigit()]
    assert not TmuxServer(swarm_home.tmux_socket).panes()

"""The real Claude Code CLI (2.1.332) as a worker, against the scripted model: it notes its task, publishes to
the feed and reports DONE through the swarm's MCP tools (no shell), and the task is validated."""

from pathlib import Path

from agentclis import agent_env
from conftest import run_cli
from mcpkit import McpSession, coordinator_env
from modelserver import ModelServer, Text, Tool
from protocol.event import EventType
from protocol.task import TaskStatus
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmkit import events, init_home, wait_until, write_plan


def test_a_claude_worker_notes_publishes_and_reports_done_through_the_mcp_tools(
        agent_clis: dict[str, Path], model_server: ModelServer, swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home, max_workers=1)
    model_server.script(
        [Tool("mcp__swarm__board_add_note", {"id": "job", "kind": "finding", "text": "noted through MCP"})],
        [Tool("mcp__swarm__feed_publish", {"type": "finding", "summary": "published through MCP", "task": "job"})],
        [Tool("mcp__swarm__mail_send", {"type": "DONE", "to": ["supervisor"], "task": "job",
                                        "body": {"summary": "done through MCP"}})],
        [Text("All done.")])
    plan = write_plan(tmp_path / "plan.json", [{"id": "job", "title": "report through tools", "profile": "claude",
                                                "description": "Note, publish and report DONE with the swarm tools."}])
    env = agent_env(tmp_path / "clis", model_server.url)
    assert run_cli("swarm", "run", str(plan), "--home", str(swarm_home.root), env=env).returncode == 0
    try:
        ledger = Ledger(swarm_home)
        wait_until(lambda: ledger.task("job").status == TaskStatus.DONE, 180, "the task to be validated")
        wait_until(lambda: len(model_server.scripted()) == 4, 60, "every scripted turn")
    finally:
        run_cli("swarm", "down", "--home", str(swarm_home.root))
    worker = ledger.task("job").attempts[-1].worker
    results = "\n".join(r.text() for r in model_server.scripted()[1:])
    assert "Error executing tool" not in results, results
    assert '"summary": "published through MCP"' in results and '"summary":"done through MCP"' in results
    task = ledger.task("job")
    assert [(n.author, n.text) for n in task.notes if n.text.endswith("through MCP")] == [
        (worker, "noted through MCP"), (worker, "published through MCP")]
    validating = next(e for e in events(swarm_home) if e.type == EventType.TASK_VALIDATING)
    assert validating.detail["claim"] == "done through MCP", "the DONE came through mail_send, before the wrapper's"


def test_a_coordinator_spawns_a_claude_worker_that_reports_through_the_tools(
        agent_clis: dict[str, Path], model_server: ModelServer, swarm_home: SwarmHome, tmp_path: Path) -> None:
    """swarm_spawn with the claude profile: the standing worker becomes a real claude worker with its own config
    (the MCP server in it) when swarm_task hands it its board task."""
    init_home(swarm_home, max_workers=1)
    model_server.script(
        [Tool("mcp__swarm__board_add_note", {"id": "t-1", "kind": "update", "text": "docs started"})],
        [Tool("mcp__swarm__mail_send", {"type": "DONE", "to": ["coordinator"], "task": "t-1",
                                        "body": {"summary": "docs written"}})],
        [Text("All done.")])
    env = agent_env(tmp_path / "clis", model_server.url)
    assert run_cli("swarm", "up", "--home", str(swarm_home.root), env=env).returncode == 0
    tools = McpSession(swarm_home, {**env, **coordinator_env(swarm_home)})
    try:
        task = tools.call("board_create_task", {"title": "Write the docs", "createdBy": "coordinator"})["id"]
        tools.call("swarm_spawn", {"labels": ["docs"], "profile": "claude"})
        tools.call("board_update_task", {"id": task, "status": "in_progress", "assignee": "worker-docs"})
        tools.call("swarm_task", {"agentId": "docs", "task": "Write the docs, then report DONE to the coordinator."})
        done = tools.call("mail_wait", {"types": ["DONE"], "task": task, "timeoutSeconds": 180})
        assert (done["from"], done["body"]["summary"]) == ("worker-docs", "docs written")
        assert tools.call("swarm_wait", {"timeoutSeconds": 180}) == {"ended": ["worker-docs"], "running": []}
        assert [(n["author"], n["text"]) for n in tools.call("board_list_tasks")[0]["notes"]] == [
            ("worker-docs", "docs started")]
        assert tools.call("board_update_task", {"id": task, "status": "done"})["status"] == "done"
        tools.call("swarm_teardown")
    finally:
        tools.close()
        run_cli("swarm", "down", "--home", str(swarm_home.root))
    assert (swarm_home.run_dir / "agents" / "worker-docs" / "claude" / ".claude.json").is_file()

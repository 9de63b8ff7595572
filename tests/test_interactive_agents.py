"""Interactive workers with the real Claude Code TUI (2.1.332) in tmux against the scripted model: the task's
multi-line prompt is pasted into the pane and taken as one turn, the agent writes the file through a tool call
and reports DONE with `agentmail`, the task validates, its hooks report starting -> working -> idle, and the
cost events add up to the usage the model served; an agent that goes idle without reporting is asked once,
then its attempt fails as stuck with its last screen."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agentclis import agent_env
from conftest import run_cli
from modelserver import ModelServer, Text, WriteFile, from_prompt
from protocol.event import EventType
from protocol.task import TaskStatus
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmkit import events, init_home, wait_until, write_plan

REPORT = r"^\s*agentmail send .*--type {kind} .*$"


@contextmanager
def swarm_running(home: SwarmHome, tmp_path: Path, model: ModelServer, task: dict) -> Iterator[Ledger]:
    """A swarm (one worker at a time) running the one task with the `claude-tui` profile until the test ends."""
    init_home(home, max_workers=1)
    plan = write_plan(tmp_path / "plan.json", [{"id": "job", "title": "write out.txt", "profile": "claude-tui",
                                                **task}])
    env = agent_env(tmp_path / "clis", model.url)
    assert run_cli("swarm", "run", str(plan), "--home", str(home.root), env=env).returncode == 0
    try:
        yield Ledger(home)
    finally:
        run_cli("swarm", "down", "--home", str(home.root))


def agent_states(home: SwarmHome, worker: str) -> list[str]:
    return [e.detail["fields"]["metadata"]["agent_state"] for e in events(home)
            if e.type == EventType.AGENT_UPDATED and e.detail.get("name") == worker
            and "agent_state" in e.detail["fields"].get("metadata", {})]


def test_interactive_claude_takes_its_prompt_as_one_turn_reports_done_and_validates(
        agent_clis: dict[str, Path], model_server: ModelServer, swarm_home: SwarmHome, tmp_path: Path) -> None:
    project = swarm_home.root.parent
    model_server.script([Text("On it."), from_prompt(REPORT.format(kind="PROGRESS"))],
                        [WriteFile(str(project / "out.txt"), "made in the pane\n")],
                        [from_prompt(REPORT.format(kind="DONE"))],
                        [Text("All done.")])
    task = {"description": "Write out.txt.\n\nIt says: made in the pane.\n\nThen report DONE.",
            "validation": {"checks": [{"kind": "content_check", "path": "out.txt", "pattern": "made in the pane"}]}}
    with swarm_running(swarm_home, tmp_path, model_server, task) as ledger:
        wait_until(lambda: ledger.task("job").status == TaskStatus.DONE, 120, "the task to be validated")
        worker = ledger.task("job").attempts[-1].worker

        def costed_and_served() -> tuple[dict[str, float], dict[str, int]]:
            costed: dict[str, float] = {}
            for event in events(swarm_home):
                if event.type == EventType.COST_UPDATE and event.detail.get("worker") == worker:
                    for key, value in event.detail["delta"].items():
                        costed[key] = costed.get(key, 0) + value
            served = {k: sum(r.usage.get(k, 0) for r in model_server.scripted())
                      for k in ("input_tokens", "output_tokens")}
            return costed, served
        wait_until(lambda: len(model_server.scripted()) == 4 and "idle" in agent_states(swarm_home, worker)[2:],
                   60, "the agent idle after its last turn")
        wait_until(lambda: all(costed_and_served()[0].get(k) == v for k, v in costed_and_served()[1].items()),
                   60, "cost events adding up to the usage served")
    first = [m for m in model_server.scripted()[0].body["messages"] if m["role"] == "user"]
    holding = [m for m in first if "# Task job: write out.txt" in json.dumps(m)]
    assert len(holding) == 1, "the prompt is one turn"
    assert "It says: made in the pane." in json.dumps(holding[0]) and "How to report" in json.dumps(holding[0])
    states = agent_states(swarm_home, worker)
    assert states[:3] == ["starting", "working", "idle"] or states[:2] == ["working", "idle"] or \
        (states[0] == "starting" and states[1] == "working"), states
    assert "idle" in states[states.index("working"):], states
    progress = [e for e in events(swarm_home) if e.type == EventType.PROGRESS and e.agent == worker]
    assert progress, "the agent's own PROGRESS reached the ledger"


def test_interactive_agent_idle_without_report_is_asked_once_then_fails_as_stuck(
        agent_clis: dict[str, Path], model_server: ModelServer, swarm_home: SwarmHome, tmp_path: Path) -> None:
    model_server.script([Text("Thinking about it.")], [Text("Still thinking, nothing to say.")])
    task = {"description": "Write out.txt.", "max_attempts": 1}
    with swarm_running(swarm_home, tmp_path, model_server, task) as ledger:
        wait_until(lambda: ledger.task("job").status == TaskStatus.BLOCKED, 120, "the attempt to fail as stuck")
    reason = ledger.task("job").attempts[-1].reason
    assert reason.startswith("stuck:"), reason
    assert "Still thinking, nothing to say." in reason, "the reason carries the pane's last screen"
    asked = [r for r in model_server.scripted() if "stopped without reporting" in r.text()]
    assert len(model_server.scripted()) == 2 and len(asked) == 1, "asked once, between its two turns"

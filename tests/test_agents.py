"""The built-in agent profiles with the real CLIs (claude-code 2.1.332, codex 0.171.0) against a scripted model
that does what the worker's prompt says: it reports PROGRESS (also through the $SWARM_* variables), writes the
file, runs the task's check, reports DONE with `agentmail`; the task validates, the agent's hooks report its
state, and the cost events add up to the usage the model server answered with."""

import json
from pathlib import Path

import pytest

from agentclis import agent_env
from conftest import run_cli
from modelserver import ModelServer, Shell, Text, WriteFile, from_prompt
from protocol.event import EventType
from protocol.task import TaskStatus
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmkit import events, init_home, wait_until, write_plan

REPORT = r"^\s*agentmail send .*--type {kind} .*$"
BY_VARIABLES = ('agentmail send --home "$SWARM_HOME" --from "$SWARM_AGENT" --to supervisor --type PROGRESS '
                '--task "$SWARM_TASK" --field step="reported through variables"')
CHECK = "grep -q 'made by the agent' out.txt"


def follow_the_prompt(model: ModelServer, project: Path) -> None:
    """The model's turns: report progress twice, write the file, run the task's check, report DONE, stop."""
    model.script([Text("Starting."), from_prompt(REPORT.format(kind="PROGRESS"))],
                 [Shell(BY_VARIABLES)],
                 [WriteFile(str(project / "out.txt"), "made by the agent\n")],
                 [Shell(CHECK)],
                 [from_prompt(REPORT.format(kind="DONE"))],
                 [Text("All done.")])


def refusals(model: ModelServer) -> list[str]:
    """Tool results the CLI answered with a refusal instead of running the command."""
    words = ("This command requires approval", "can't be checked before it runs", "command not found",
             "Permission denied", "Read-only file system")
    return [text for r in model.scripted() for text in r.text().splitlines() if any(w in text for w in words)]


@pytest.mark.parametrize("profile", ["claude", "codex"])
def test_headless_agent_following_its_prompt_reports_and_its_task_validates(
        profile: str, agent_clis: dict[str, Path], model_server: ModelServer, swarm_home: SwarmHome,
        tmp_path: Path) -> None:
    project = swarm_home.root.parent
    init_home(swarm_home, max_workers=1)
    follow_the_prompt(model_server, project)
    plan = write_plan(tmp_path / "plan.json", [{
        "id": "job", "title": "write out.txt", "profile": profile,
        "description": "Write out.txt saying 'made by the agent', then report DONE.",
        "validation": {"checks": [{"kind": "files_exist", "paths": ["out.txt"]}, {"kind": "command", "run": CHECK}]},
    }])
    env = {**agent_env(tmp_path / "clis", model_server.url), "OPENAI_API_KEY": "sk-test-0000"}
    assert run_cli("swarm", "run", str(plan), "--home", str(swarm_home.root), env=env).returncode == 0
    try:
        ledger = Ledger(swarm_home)
        wait_until(lambda: ledger.task("job").status == TaskStatus.DONE, 120, "the task to be validated")
        worker = ledger.task("job").attempts[-1].worker
        def served() -> dict[str, int]:
            return {k: sum(r.usage.get(k, 0) for r in model_server.requests) for k in ("input_tokens", "output_tokens")}

        def costed() -> dict[str, float]:
            totals: dict[str, float] = {}
            for event in events(swarm_home):
                if event.type == EventType.COST_UPDATE and event.detail.get("worker") == worker:
                    for key, value in event.detail["delta"].items():
                        totals[key] = totals.get(key, 0) + value
            return totals
        wait_until(lambda: len(model_server.scripted()) == 6 and costed() and all(
            costed().get(k) == v for k, v in served().items()), 60, "cost events adding up to the served usage")
        last = "exited" if profile == "claude" else "idle"
        wait_until(lambda: ledger.registry()[worker].metadata.get("agent_state") == last, 60, f"the agent {last}")
    finally:
        run_cli("swarm", "down", "--home", str(swarm_home.root))
    assert not refusals(model_server), refusals(model_server)
    progress = [e.summary for e in events(swarm_home) if e.type == EventType.PROGRESS and e.agent == worker]
    assert "reported through variables" in progress, progress
    validating = next(e for e in events(swarm_home) if e.type == EventType.TASK_VALIDATING)
    assert validating.detail["claim"] == "...", "the agent's own DONE (the prompt's line) came first"
    states = [e.detail["fields"]["metadata"]["agent_state"] for e in events(swarm_home)
              if e.type == EventType.AGENT_UPDATED and "agent_state" in e.detail["fields"].get("metadata", {})]
    assert "idle" in states, states
    if profile == "claude":
        assert states[:2] == ["starting", "working"] and states[-1] == "exited", states
    config = json.loads((swarm_home.run_dir / "agents" / worker / "worker.json").read_text())
    assert config["exact"] == [CHECK]

"""A permission dialog and a steer with the real Claude Code TUI (2.1.332) in a worker under the real supervisor,
against the scripted model: the model runs a command the worker's policy does not pre-allow, so claude asks;
the supervisor shows the worker `needs_input` with the dialog's text and options (registry, `swarm status
--json`, a `question` in the feed); `swarm answer W Yes` picks it and the command runs. A `swarm steer` sent while
the agent works waits in its queue and reaches the model only after the agent is idle; the agent then reports
DONE, the task validates, and the cost events add up to the usage the model served."""

import json
import threading
from pathlib import Path

from conftest import run_cli
from modelserver import ModelServer, Shell, Text, from_prompt
from protocol.event import EventType
from protocol.task import AttemptOutcome, TaskStatus
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmkit import events, wait_until
from test_interactive_agents import REPORT, swarm_running

STEER = "STEER-5 the generator output is fine: report DONE now"


def status_of(home: SwarmHome, worker: str) -> dict:
    shown = run_cli("swarm", "status", "--json", "--home", str(home.root))
    assert shown.returncode == 0, shown.stderr
    return next((w for w in json.loads(shown.stdout)["workers"] if w["name"] == worker), {})


def supervisor_steps(home: SwarmHome, steps: int) -> None:
    """Wait until the supervisor has run `steps` more steps (each one renews its heartbeat)."""
    seen: list[object] = []

    def stepped() -> bool:
        beat = Ledger(home).registry()["supervisor"].last_heartbeat
        if not seen or beat != seen[-1]:
            seen.append(beat)
        return len(seen) > steps
    wait_until(stepped, 60, f"{steps} supervisor steps")


def costs(home: SwarmHome, worker: str) -> dict[str, float]:
    summed: dict[str, float] = {}
    for event in events(home):
        if event.type == EventType.COST_UPDATE and event.detail.get("worker") == worker:
            for key, value in event.detail["delta"].items():
                summed[key] = summed.get(key, 0) + value
    return summed


def test_a_permission_dialog_is_asked_answered_and_a_steer_waits_for_idle(
        agent_clis: dict[str, Path], model_server: ModelServer, swarm_home: SwarmHome, tmp_path: Path) -> None:
    project = tmp_path  # the plan's directory: where the task runs
    generate = f"python3 -c \"open('{project / 'ran.txt'}', 'w').write('the tool ran')\""
    working = threading.Event()
    model_server.script([Text("Running the generator."), Shell(generate)])
    model_server.script([Text("The generator ran; waiting for word.")], gate=working)
    model_server.script([from_prompt(REPORT.format(kind="DONE"))], [Text("Reported.")])
    task = {"description": "Run the generator, then wait for word before you report DONE.", "max_attempts": 1,
            "validation": {"checks": [{"kind": "content_check", "path": "ran.txt", "pattern": "the tool ran"}]}}
    with swarm_running(swarm_home, tmp_path, model_server, task) as ledger:
        worker = wait_until(lambda: ledger.task("job").assignee, 60, "the task assigned")
        shown = wait_until(lambda: (s := status_of(swarm_home, worker)).get("agent_state") == "needs_input"
                           and "Options:" in s["agent_detail"] and s, 180, "`swarm status` showing the dialog")
        assert "python3" in shown["agent_detail"] and "1. Yes" in shown["agent_detail"], shown
        assert ledger.registry()[worker].metadata["agent_state"] == "needs_input"
        asked = [e for e in events(swarm_home) if e.type == EventType.QUESTION and e.agent == worker]
        assert len(asked) == 1 and asked[0].detail["kind"] == "dialog", asked
        assert "Yes" in asked[0].detail["options"] and "python3" in asked[0].detail["question"]
        assert not (project / "ran.txt").exists(), "the command waits for the answer"

        answered = run_cli("swarm", "answer", worker, "Yes", "--json", "--home", str(swarm_home.root))
        assert answered.returncode == 0 and json.loads(answered.stdout)["answered"] == "Yes", answered.stderr
        wait_until(lambda: (project / "ran.txt").exists(), 60, "the command to run once answered")
        assert status_of(swarm_home, worker)["question"] is None, "the answer closes the question"

        wait_until(lambda: len(model_server.scripted()) == 2, 60, "the agent's next turn (held: it works)")
        steered = run_cli("swarm", "steer", worker, STEER, "--json", "--home", str(swarm_home.root))
        assert steered.returncode == 0 and json.loads(steered.stdout) == {"id": "queued"}, steered.stderr
        assert status_of(swarm_home, worker)["queued"] == [STEER]
        supervisor_steps(swarm_home, 4)  # the supervisor looks at the busy pane: nothing is typed into it
        assert status_of(swarm_home, worker)["queued"] == [STEER] and not model_server.received("STEER-5")
        working.set()
        wait_until(lambda: ledger.task("job").status == TaskStatus.DONE, 180, "the task to be validated")
        served = lambda: {k: sum(r.usage.get(k, 0) for r in model_server.scripted())  # noqa: E731
                          for k in ("input_tokens", "output_tokens")}
        wait_until(lambda: all(costs(swarm_home, worker).get(k) == v for k, v in served().items()), 60,
                   "cost events adding up to the usage served")
    steered_at = [i for i, r in enumerate(model_server.scripted()) if "[steer from operator]\nSTEER-5" in r.text()]
    assert steered_at and steered_at[0] == 2, "the steer reached the model after the held turn ended, not before"
    assert sum(r.text().count("STEER-5") for r in model_server.scripted()[2:3]) == 1, "delivered once"
    assert [a.outcome for a in ledger.task("job").attempts] == [AttemptOutcome.DONE]

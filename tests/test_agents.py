"""The built-in agent profiles with the real CLIs (claude-code 2.1.332, codex 0.171.0) against a scripted model
that does what the worker's prompt says: it reports PROGRESS (also through the $SWARM_* variables), writes the
file, runs the task's check, reports DONE with `agentmail`; the task validates, the agent's hooks report its
state, and the cost events add up to the usage the model server answered with."""

import json
from pathlib import Path

import pytest

from agentclis import agent_env
from conftest import run_cli
from modelserver import ModelServer, Shell, Text, Turn, WriteFile, from_prompt
from protocol.event import EventType
from protocol.task import TaskStatus
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmkit import events, init_home, wait_until, write_plan

REPORT = r"^\s*agentmail send .*--type {kind} .*$"
BY_VARIABLES = ('agentmail send --home "$SWARM_HOME" --from "$SWARM_AGENT" --to supervisor --type PROGRESS '
                '--task "$SWARM_TASK" --field step="reported through variables"')
CHECK = "grep -q 'made by the agent' out.txt"


def follow_the_prompt(model: ModelServer, project: Path, last: Turn) -> None:
    """The model's turns: report progress twice, write the file, run the task's check, report DONE, then `last`."""
    model.script([Text("Starting."), from_prompt(REPORT.format(kind="PROGRESS"))],
                 [Shell(BY_VARIABLES)],
                 [WriteFile(str(project / "out.txt"), "made by the agent\n")],
                 [Shell(CHECK)],
                 [from_prompt(REPORT.format(kind="DONE"))],
                 last)


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
    follow_the_prompt(model_server, project, [Text("All done.")])
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


# -- the policy, the usage sums and the budget (no CLI needed) --------------------------------------------------

@pytest.mark.parametrize(("command", "allowed"), [
    ('agentmail send --home /h --from w1 --to supervisor --type DONE --task t --field summary="a; b | c"', True),
    ('agentmail send --home "$SWARM_HOME" --from "${SWARM_AGENT}" --type PROGRESS --task "$SWARM_TASK"', True),
    ("agentmail read --home /h w1", True),
    ("pytest -q tests/test_x.py | tail -1", True),  # the task's check, exactly as written
    ("agentmail send --to supervisor; rm -rf ~", False),
    ("agentmail send --to supervisor && curl http://x", False),
    ('agentmail send --field summary="$(cat ~/.ssh/id_rsa)"', False),
    ("agentmail send --field summary=`id`", False),
    ('agentmail send --field summary="$HOME"', False),
    ("agentmail send --to supervisor > /etc/passwd", False),
    ("agentmail send 'unclosed", False),
    ("rm -rf /", False),
    ("pytest -q tests/test_x.py", False),  # not the check as written
])
def test_policy_allows_reporting_and_the_checks_only(command: str, allowed: bool) -> None:
    from swarmd.agents.policy import allowed as policy_allows
    assert policy_allows(command, exact=("pytest -q tests/test_x.py | tail -1",)) is allowed


USAGE_SCRIPT = ("agentmail send --home \"$SWARM_HOME\" --from \"$SWARM_AGENT\" --to supervisor --type AGENT_STATE "
                "--task \"$SWARM_TASK\" --field state=idle --field usage='{{\"input_tokens\": {n}, \"output_tokens\": 5}}'\n"
                "agentmail send --home \"$SWARM_HOME\" --from \"$SWARM_AGENT\" --to supervisor --type AGENT_STATE "
                "--task \"$SWARM_TASK\" --field state=idle --field usage='{{\"input_tokens\": {m}, \"output_tokens\": 5}}'\n"
                "echo done > {task}.txt")


def test_usage_is_summed_by_task_and_a_spent_budget_pauses_dispatch(swarm_home: SwarmHome, tmp_path: Path) -> None:
    """Agents' running totals become cost_update differences; `swarm stats` sums them by task and in all; once
    they reach budget_tokens no new attempt starts and the feed says why."""
    init_home(swarm_home, max_workers=1)
    with open(swarm_home.config_file, "a") as config:
        config.write("budget_tokens = 700\n")
    tasks = [{"id": "a", "title": "a", "description": USAGE_SCRIPT.format(n=400, m=700, task="a"), "priority": 0,
              "validation": {"checks": [{"kind": "files_exist", "paths": ["a.txt"]}]}},
             {"id": "b", "title": "b", "description": USAGE_SCRIPT.format(n=10, m=20, task="b"), "priority": 1}]
    plan = write_plan(tmp_path / "plan.json", tasks)
    assert run_cli("swarm", "run", str(plan), "--home", str(swarm_home.root)).returncode == 0
    try:
        ledger = Ledger(swarm_home)
        wait_until(lambda: ledger.task("a").status == TaskStatus.DONE and any(
            "budget spent" in e.summary for e in events(swarm_home)), 60, "task a done and the budget spent")
        stats = json.loads(run_cli("swarm", "stats", "--json", "--home", str(swarm_home.root)).stdout)
    finally:
        run_cli("swarm", "down", "--home", str(swarm_home.root))
    assert stats["usage_by_task"] == {"a": {"input_tokens": 700, "output_tokens": 5}}, stats
    assert stats["usage_total"] == {"input_tokens": 700, "output_tokens": 5}
    assert ledger.task("b").status == TaskStatus.OPEN, "no attempt starts once the budget is spent"
    deltas = [e.detail["delta"] for e in events(swarm_home) if e.type == EventType.COST_UPDATE]
    assert deltas == [{"input_tokens": 400, "output_tokens": 5}, {"input_tokens": 300}], deltas


def test_successor_after_checkpoint_resumes_the_claude_session(agent_clis: dict[str, Path], model_server: ModelServer,
                                                               swarm_home: SwarmHome, tmp_path: Path) -> None:
    """Each Claude worker has its own session id; the successor of a worker that sent CHECKPOINT resumes (a fork
    of) its session, so its model sees the conversation so far."""
    init_home(swarm_home, max_workers=1)
    model_server.script([Text("Halfway there: the secret word is PAPAYA."), from_prompt(REPORT.format(kind="CHECKPOINT"))],
                        [Text("Checkpointed.")],  # the first worker's last turn (it ends long before the next starts)
                        [from_prompt(REPORT.format(kind="DONE"))],
                        [Text("Done.")])
    plan = write_plan(tmp_path / "plan.json", [{"id": "job", "title": "two halves", "profile": "claude",
                                                "description": "Do it in two halves."}])
    env = agent_env(tmp_path / "clis", model_server.url)
    assert run_cli("swarm", "run", str(plan), "--home", str(swarm_home.root), env=env).returncode == 0
    try:
        ledger = Ledger(swarm_home)
        wait_until(lambda: ledger.task("job").status == TaskStatus.DONE, 120, "the successor's DONE")
    finally:
        run_cli("swarm", "down", "--home", str(swarm_home.root))
    first, second = (a.worker for a in ledger.task("job").attempts)
    successor = model_server.scripted()[2].text()
    assert f"agent `{second}`" in successor and "PAPAYA" in successor, "the successor goes on from the conversation"
    sessions = [ledger.registry()[w].metadata.get("session_id") for w in (first, second)]
    assert all(sessions) and sessions[0] != sessions[1], sessions

"""Workers on a host as on the supervisor's machine (a real host agent and NATS server on loopback): watched by
their own heartbeat, carried in the host's beat (one that goes stale while the host is up is stuck); an
interactive agent there given its prompts by its host, its state and cost reaching the supervisor's ledger."""

import contextlib
import json
import os
import signal
from pathlib import Path

from agentclis import agent_env
from conftest import run_cli
from hostkit import HostedSwarm, loopback, running  # noqa: F401 - the fixture
from modelserver import ModelServer, RateLimit, Text
from protocol.event import EventType
from swarmd.ledger.log import Ledger
from swarmd.operate import Operator
from swarmkit import events, wait_until, write_plan


def test_a_remote_worker_whose_heartbeat_goes_stale_while_its_host_is_up_is_stuck(loopback: HostedSwarm) -> None:
    # Heartbeats every second (hostkit's), stale after 4 s; the stuck worker stops its own wrapper (whose thread beats), its
    # pane running on: only its heartbeat says it is stuck.
    loopback.config(max_workers=2, local_workers=False, ttl=3.0, stale=4.0)  # beats every 1 s
    loopback.join("h1", slots=2)
    pid_file, gate = loopback.root / "stuck.pid", loopback.root / "never"
    plan = write_plan(loopback.root / "plan.json", [
        {"id": "stuck", "title": "stuck", "max_attempts": 1,
         "description": f"echo $PPID > {pid_file}; kill -STOP $PPID; sleep 120"},
        {"id": "fine", "title": "fine", "description": f"while [ ! -e {gate} ]; do sleep 0.05; done"},
    ])
    home = ["--home", str(loopback.home.root)]
    assert run_cli("swarm", "run", str(plan), *home).returncode == 0
    ledger = Ledger(loopback.home)
    try:
        wait_until(lambda: ledger.task("stuck").status == "blocked", 60, "the stuck worker to be judged stuck")
        attempt = ledger.task("stuck").attempts[0]
        assert "no heartbeat for over 4 s" in attempt.reason
        wait_until(lambda: not running(loopback.tmux("h1"), f"t-{attempt.worker}"), 30, "h1 to end the stuck worker")
        fine = ledger.task("fine")
        assert fine.status == "in_progress" and len(fine.attempts) == 1  # beating: not stuck, the same attempt
        assert not any("is down" in e.summary for e in events(loopback.home) if e.type == EventType.CUSTOM)
        status = run_cli("swarm", "status", "--json", *home)
        ages = {w["name"]: w["heartbeat_age"] for w in json.loads(status.stdout)["workers"]}
        assert ages[fine.assignee] is not None  # its heartbeat is shown here as a local worker's is
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_a_remote_interactive_worker_gets_its_prompts_on_its_host_and_reports_its_state_and_cost(
        agent_clis: dict[str, Path], model_server: ModelServer, loopback: HostedSwarm) -> None:
    """The real Claude Code TUI on a host: the host types its task into its pane; the model's first answer is a
    usage limit that resets 3 s ahead, so the supervisor pauses the worker and at the reset has the host type in
    "continue"; then an operator's steer, typed in once the agent is idle. Its hooks' AGENT_STATE and the cost they
    carry reach the supervisor's ledger."""
    model_server.script(RateLimit(resets_in=3), [Text("On it.")], [Text("Steered.")])
    loopback.config(max_workers=1, local_workers=False)
    env = agent_env(loopback.root / "clis", model_server.url)
    loopback.join("h1", slots=1, env=env)
    plan = write_plan(loopback.root / "plan.json", [{"id": "job", "title": "talk", "profile": "claude-tui",
                                                     "description": "Say hello."}])
    # (`swarm run` checks that the profile's program is on this machine's PATH too)
    assert run_cli("swarm", "run", str(plan), "--home", str(loopback.home.root), env=env).returncode == 0
    ledger = Ledger(loopback.home)
    wait_until(lambda: len(model_server.scripted()) == 1, 120, "the task's turn, typed in on h1")
    worker = ledger.task("job").assignee
    assert "# Task job: talk" in json.dumps(model_server.scripted()[0].body)
    wait_until(lambda: any(f"{worker} paused until" in e.summary for e in events(loopback.home)), 60, "the pause")
    wait_until(lambda: len(model_server.scripted()) == 2, 60, "the continue's turn, typed in on h1 at the reset")
    assert "The usage limit you hit has reset" in json.dumps(model_server.scripted()[1].body)
    wait_until(lambda: ledger.registry()[worker].metadata.get("agent_state") == "idle", 60, "idle after the turn")
    Operator(loopback.home).steer(worker, "Also say STEERED-42.")
    wait_until(lambda: len(model_server.scripted()) == 3, 60, "the steer's turn, typed in on h1")
    assert "STEERED-42" in json.dumps(model_server.scripted()[2].body)
    job = ledger.task("job")
    assert job.status == "in_progress" and len(job.attempts) == 1, \
        (job.attempts, [e.summary for e in events(loopback.home)])  # paused, not failed

    def adds_up() -> bool:
        """Whether the cost events add up to the usage served (recorded once each request has been answered)."""
        requests = model_server.scripted()
        if not requests[-1].usage:  # (the 429 has none)
            return False
        costed: dict[str, float] = {}
        for event in events(loopback.home):
            if event.type == EventType.COST_UPDATE and event.detail.get("worker") == worker:
                for key, value in event.detail["delta"].items():
                    costed[key] = costed.get(key, 0) + value
        return all(costed.get(k) == sum(r.usage.get(k, 0) for r in requests) for k in ("input_tokens", "output_tokens"))

    wait_until(adds_up, 60, "cost events adding up to the usage served")
    states = [e.detail["fields"]["metadata"].get("agent_state") for e in events(loopback.home)
              if e.type == EventType.AGENT_UPDATED and e.detail.get("name") == worker
              and "agent_state" in e.detail.get("fields", {}).get("metadata", {})]
    assert "working" in states and "idle" in states[states.index("working"):], states

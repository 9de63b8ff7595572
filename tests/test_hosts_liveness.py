"""A worker on a host is watched by its own heartbeat, carried in its host's beat: one that goes stale while its
host is up is stuck, as a worker on the supervisor's machine is (a real host agent and NATS server on loopback)."""

import contextlib
import json
import os
import signal

from conftest import run_cli
from hostkit import HostedSwarm, loopback, running  # noqa: F401 - the fixture
from protocol.event import EventType
from swarmd.ledger.log import Ledger
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

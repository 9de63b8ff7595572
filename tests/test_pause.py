"""Pausing dispatch: no new attempt starts while paused (through a supervisor restart), and resuming lets the
plan go on; both land in the feed with who did it."""

import json
from pathlib import Path

from conftest import run_cli
from swarmkit import events, init_home, statuses, wait_until, write_plan

from protocol.event import EventType
from swarmd.home import SwarmHome
from swarmd.ledger.registry import heartbeat_path
from swarmd.operate import Operator


def test_a_paused_swarm_starts_nothing_until_resumed(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home, max_workers=2)
    home = ["--home", str(swarm_home.root)]
    paused = run_cli("swarm", "pause", *home, "--json")
    assert paused.returncode == 0 and json.loads(paused.stdout) == {"paused": True, "changed": True}
    assert Operator(swarm_home).pause() is False, "already paused"

    plan = write_plan(tmp_path / "plan.json", [{"id": "job", "title": "a job", "description": "true"}])
    assert run_cli("swarm", "run", str(plan), *home).returncode == 0  # a new supervisor: the pause holds
    beat = heartbeat_path(swarm_home.run_dir / "heartbeats", "supervisor")
    first = wait_until(lambda: beat.exists() and beat.stat().st_mtime_ns, 30, "the supervisor's first step")
    wait_until(lambda: beat.stat().st_mtime_ns != first, 30, "a later step of the supervisor")
    assert statuses(swarm_home) == {"job": "open"}
    assert not [e for e in events(swarm_home) if e.type == EventType.TASK_ASSIGNED]
    assert "dispatch paused" in run_cli("swarm", "status", *home, env={"COLUMNS": "200"}).stdout

    assert run_cli("swarm", "resume", *home).stdout.strip() == "dispatch resumed"
    wait_until(lambda: statuses(swarm_home) == {"job": "done"}, 60, "the task to run once resumed")
    said = [(e.agent, e.summary) for e in events(swarm_home) if e.detail.get("dispatch")]
    assert said == [("operator", "dispatch paused by operator"), ("operator", "dispatch resumed by operator")]
    assert run_cli("swarm", "down", *home).returncode == 0

"""Helpers for end-to-end swarm tests: plans written to disk, the CLI as a real process, ledger checks."""

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from protocol.event import Event, EventType
from protocol.task import LIVE_STATUSES, TaskStatus
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from conftest import run_cli

T = TypeVar("T")

FAST_CONFIG = """\
name = "t"
max_workers = {max_workers}
durable = false
tick = 0.1
heartbeat_interval = {heartbeat}
stale_after = {stale}
"""


def init_home(home: SwarmHome, max_workers: int = 2, heartbeat: float = 1.0, stale: float = 30.0) -> None:
    assert run_cli("swarm", "init", "--home", str(home.root)).returncode == 0
    home.config_file.write_text(FAST_CONFIG.format(max_workers=max_workers, heartbeat=heartbeat, stale=stale))


def write_plan(path: Path, tasks: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"tasks": tasks}))
    return path


def poll_until(predicate: Callable[[], T], timeout: float) -> T | None:
    """Poll `predicate` until it is truthy and return its value, or None once `timeout` s have passed (for a
    test that goes on another way when a condition does not come, as when tmux misses a pane's status)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, what: str = "the condition") -> T:
    """Poll `predicate` until it is truthy and return its value; fail the test with `what` after `timeout` s.

    The deadline only bounds a failure: it is far above how long anything takes, so that load (both cores
    busy) can stretch the wait without failing the test."""
    value = poll_until(predicate, timeout)
    if not value:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")
    return value


def start_one_task(home: SwarmHome, tmp_path: Path, description: str) -> str:
    """Run a one-task plan (task `job`, one worker at a time) in the background; return its worker's name."""
    init_home(home, max_workers=1)
    plan = write_plan(tmp_path / "plan.json", [{"id": "job", "title": "a job", "description": description}])
    assert run_cli("swarm", "run", str(plan), "--home", str(home.root)).returncode == 0
    return wait_until(lambda: Ledger(home).task("job").assignee, 30, "the task to be assigned")


def events(home: SwarmHome) -> list[Event]:
    return list(Ledger(home).events())


def max_live(home: SwarmHome) -> int:
    """The largest number of tasks that were live (assigned, in progress, validating) at any moment."""
    status: dict[str, str] = {}
    worst = 0
    for event in events(home):
        if event.task and "status" in event.detail:
            status[event.task] = event.detail["status"]
        elif event.type == EventType.TASK_CREATED and event.task:
            status[event.task] = event.detail["task"]["status"]
        worst = max(worst, sum(s in LIVE_STATUSES for s in status.values()))
    return worst


def first_seq(home: SwarmHome, type: EventType, task: str) -> int:
    return next(e.seq for e in events(home) if e.type == type and e.task == task)


def statuses(home: SwarmHome) -> dict[str, TaskStatus]:
    return {t.id: t.status for t in Ledger(home).board().values()}

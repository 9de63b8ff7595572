"""Timers survive steps of the wall clock: durations and deadlines run on the monotonic clock, and the wall
clock (injected here, and stepped) is for display and the ledger only."""

import os
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from protocol.ids import utcnow
from protocol.task import Task, TaskStatus
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.supervisor.loop import SUPERVISOR, Supervisor
from swarmkit import init_home, wait_until


class SteppedClock:
    """The wall clock, plus an offset a test can step forward or back at any moment."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self):  # type: ignore[no-untyped-def]
        return utcnow() + self.offset


@pytest.fixture
def stepped(swarm_home: SwarmHome) -> Iterator[tuple[Supervisor, SteppedClock]]:
    """A supervisor serving in a thread of this test, on a wall clock the test steps."""
    init_home(swarm_home, stale=8.0)
    clock = SteppedClock()
    supervisor = Supervisor(swarm_home, clock=clock)
    thread = threading.Thread(target=supervisor.run, daemon=True)
    thread.start()
    yield supervisor, clock
    supervisor.stop()
    thread.join(30)


def _status(home: SwarmHome, task: str) -> TaskStatus:
    return Ledger(home).task(task).status


def _steps_after_now(home: SwarmHome, clock: SteppedClock, count: int = 2) -> None:
    """Wait until the supervisor has finished `count` more steps (it heartbeats after each, by its clock)."""
    beat = home.run_dir / "heartbeats" / SUPERVISOR
    seen: set[float] = set()
    threshold = clock().timestamp() - 1

    def stepped() -> bool:
        mtime = beat.stat().st_mtime
        if mtime >= threshold:
            seen.add(mtime)
        return len(seen) > count

    wait_until(stepped, timeout=30, what=f"{count} supervisor steps on the stepped clock")


def test_a_wall_clock_stepped_forward_gives_no_false_timeout_or_staleness(
        stepped: tuple[Supervisor, SteppedClock], swarm_home: SwarmHome, tmp_path: Path) -> None:
    supervisor, clock = stepped
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    Ledger(swarm_home).add_task(Task(id="slow", title="waits for the test", description=f"cat {gate} > /dev/null",
                                     timeout=10), "operator")
    wait_until(lambda: _status(swarm_home, "slow") == TaskStatus.IN_PROGRESS, timeout=30, what="the task to start")
    clock.offset = timedelta(minutes=31)
    _steps_after_now(swarm_home, clock)
    assert _status(swarm_home, "slow") == TaskStatus.IN_PROGRESS, Ledger(swarm_home).task("slow").attempts
    with open(gate, "w") as release:
        release.write("go\n")
    wait_until(lambda: _status(swarm_home, "slow") == TaskStatus.DONE, timeout=30, what="the task to finish")
    assert [a.outcome for a in Ledger(swarm_home).task("slow").attempts][-1].value == "done"


def test_a_wall_clock_stepped_back_still_times_out(stepped: tuple[Supervisor, SteppedClock],
                                                     swarm_home: SwarmHome, tmp_path: Path) -> None:
    supervisor, clock = stepped
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    Ledger(swarm_home).add_task(Task(id="stuck", title="never ends", description=f"cat {gate} > /dev/null",
                                     timeout=3, max_attempts=1), "operator")
    wait_until(lambda: _status(swarm_home, "stuck") == TaskStatus.IN_PROGRESS, timeout=30, what="the task to start")
    clock.offset = -timedelta(hours=1)
    wait_until(lambda: _status(swarm_home, "stuck") == TaskStatus.BLOCKED, timeout=60, what="the timeout to fire")
    assert "TIMEOUT" in Ledger(swarm_home).task("stuck").attempts[-1].reason

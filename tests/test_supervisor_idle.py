"""An idle supervisor: it lists the panes only when one may have died or its safety period is up, and sleeps
until its next deadline. Time is its injected monotonic clock; the panes are a real tmux server's."""

import subprocess
from pathlib import Path

from protocol.task import AttemptOutcome, Task, TaskStatus
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.supervisor.loop import Supervisor
from swarmkit import init_home


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counted_panes(supervisor: Supervisor) -> list[int]:
    """Count the supervisor's calls of `tmux.panes` (an instance attribute; the class is untouched)."""
    calls = [0]
    original = supervisor.tmux.panes

    def panes():  # type: ignore[no-untyped-def]
        calls[0] += 1
        return original()
    supervisor.tmux.panes = panes  # type: ignore[method-assign]
    return calls


def test_panes_are_listed_on_a_death_or_after_the_safety_period_only(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home)  # heartbeat_interval 1 s: the safety period
    clock = Clock()
    supervisor = Supervisor(swarm_home, monotonic=clock)
    Ledger(swarm_home).add_task(Task(id="nap", title="naps", description="sleep 120", max_attempts=1), "operator")
    supervisor.recover()
    supervisor.dispatch()
    calls = counted_panes(supervisor)
    supervisor.step()
    supervisor.step()
    assert calls[0] == 1, "a second step with no pane event and no time gone by leaves tmux alone"
    assert supervisor.next_due() == clock.now + supervisor.safety_period(), "nothing else is due before the next look"
    supervisor._pane_died()  # what the pane-died hook's file write calls
    supervisor.step()
    assert calls[0] == 2

    worker = supervisor.workers["w1"]
    tmux = ["tmux", "-S", str(swarm_home.tmux_socket)]
    subprocess.run([*tmux, "new-session", "-d", "-s", "holder", "sleep 600"], check=True)  # the server stays up
    supervisor.tmux.kill_session(worker.session)  # no pane-died hook for this: only the safety period finds it
    supervisor.step()
    assert Ledger(swarm_home).task("nap").status != TaskStatus.BLOCKED
    clock.now += supervisor.safety_period()
    supervisor.step()
    attempt = Ledger(swarm_home).task("nap").attempts[-1]
    assert attempt.outcome == AttemptOutcome.FAILED and "without reporting" in attempt.reason
    assert supervisor.next_due() == clock.now + supervisor.safety_period()


def test_the_next_step_is_due_at_the_earliest_deadline(swarm_home: SwarmHome) -> None:
    init_home(swarm_home, heartbeat=50.0, stale=30.0)
    clock = Clock()
    supervisor = Supervisor(swarm_home, monotonic=clock)
    Ledger(swarm_home).add_task(Task(id="nap", title="naps", description="sleep 120", timeout=20.0,
                                     max_attempts=1), "operator")
    supervisor.recover()
    supervisor.dispatch()
    supervisor.step()
    started = supervisor.workers["w1"].started_at
    assert supervisor.next_due() == started + 20.0, "its timeout comes before staleness and the safety period"
    clock.now = started + 20.5
    supervisor.step()
    task = Ledger(swarm_home).task("nap")
    assert "TIMEOUT" in task.attempts[0].reason

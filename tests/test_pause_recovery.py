"""A usage-limit pause read from the pane alone, and kept across a supervisor SIGKILL, with the real Claude Code
TUI (2.1.332) in a worker under the real supervisor. The worker's own settings disable every hook (a user's
`disableAllHooks`), so no AGENT_STATE mail comes: the scripted model's 429 shows on claude's screen only
(tests/panes/claude-ratelimit.txt), and the supervisor's look at the pane pauses the worker. The supervisor is
then SIGKILLed and started again while the worker is paused: it comes back with the worker still paused until
the same time (neither failed nor stale), gives it the "continue" prompt at that time, and the task validates.
The pause's record and its taking up are checked on moved clocks too."""

import os
import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path

from agentclis import agent_env
from conftest import run_cli
from modelserver import ModelServer, RateLimit, Text, WriteFile, from_prompt
from protocol.event import EventType
from protocol.task import AttemptOutcome, TaskStatus
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.operate import Operator
from swarmd.supervisor.daemon import running_pid, wait_exit
from swarmd.supervisor.loop import Supervisor
from swarmd.supervisor.state import WorkerState
from swarmkit import events, init_home, wait_until, write_plan
from test_interactive_agents import REPORT, agent_states

PAUSE = 20  # seconds: `rate_limit_wait`, the pause at a notice that gives no reset time (claude's does not)


def test_a_pause_seen_on_the_screen_survives_a_supervisor_sigkill(
        agent_clis: dict[str, Path], model_server: ModelServer, swarm_home: SwarmHome, tmp_path: Path) -> None:
    project = tmp_path
    model_server.script(RateLimit(resets_in=PAUSE),
                        [WriteFile(str(project / "out.txt"), "made after the limit\n")],
                        [from_prompt(REPORT.format(kind="DONE"))],
                        [Text("All done.")])
    init_home(swarm_home, max_workers=1)
    with swarm_home.config_file.open("a") as config:
        config.write(f"rate_limit_wait = {PAUSE}\n")
    env = agent_env(tmp_path / "clis", model_server.url)
    (Path(env["CLAUDE_CONFIG_DIR"]) / "settings.json").write_text('{"disableAllHooks": true}')
    plan = write_plan(tmp_path / "plan.json", [{
        "id": "job", "title": "write out.txt", "profile": "claude-tui", "max_attempts": 1,
        "description": "Write out.txt.\n\nIt says: made after the limit.\n\nThen report DONE.",
        "validation": {"checks": [{"kind": "content_check", "path": "out.txt", "pattern": "made after"}]}}])
    home = ["--home", str(swarm_home.root)]
    assert run_cli("swarm", "run", str(plan), *home, env=env).returncode == 0
    ledger, operator = Ledger(swarm_home), Operator(swarm_home)
    try:
        paused = wait_until(lambda: [w for w in operator.status()["workers"] if w.paused_until], 180,
                            "the worker paused from its screen")[0]
        assert paused.agent_state == "rate_limited" and "429" in paused.agent_detail, paused

        pid = running_pid(swarm_home)
        os.kill(pid, signal.SIGKILL)
        assert wait_exit(pid, 10), "the supervisor survived SIGKILL"
        assert run_cli("swarm", "up", *home, env=env).returncode == 0
        wait_until(lambda: any(e.type == EventType.SUPERVISOR_RECOVERED for e in events(swarm_home)), 60,
                   "the supervisor recovered")
        until = datetime.fromisoformat(paused.paused_until)
        assert any(f"{paused.name} is still paused until {until:%Y-%m-%d %H:%M:%S} UTC" in e.summary
                   for e in events(swarm_home)), "still paused, until the same time"

        wait_until(lambda: ledger.task("job").status == TaskStatus.DONE, 180, "the task to be validated")
    finally:
        run_cli("swarm", "down", *home)
    pauses = [e for e in events(swarm_home) if f"{paused.name} paused until" in e.summary]
    assert len(pauses) == 1, "one pause, taken up by the restarted supervisor (not paused afresh)"
    resumed = [e for e in events(swarm_home) if "usage limit has reset" in e.summary]
    assert len(resumed) == 1 and resumed[0].ts >= until - timedelta(seconds=1), "resumed at the reset, not before"
    continued = [r for r in model_server.scripted() if "[resume from supervisor]" in r.text()]
    assert continued and "continue" in continued[0].text().lower()
    assert model_server.scripted()[-1].text().count("[resume from supervisor]") == 1, "told to continue once"
    assert [a.outcome for a in ledger.task("job").attempts] == [AttemptOutcome.DONE], "one attempt, not failed"
    assert set(agent_states(swarm_home, paused.name)) == {"rate_limited"}, "no hook said anything: the pane did"


class Clocks:
    """A wall clock and a monotonic one the test moves together."""

    def __init__(self) -> None:
        self.wall, self.mono = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc), 1000.0

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


def test_a_pause_is_recorded_to_be_taken_up_and_takes_the_reset_time_a_later_report_gives(
        swarm_home: SwarmHome) -> None:
    init_home(swarm_home)
    clocks = Clocks()
    first = Supervisor(swarm_home, clock=lambda: clocks.wall, monotonic=lambda: clocks.mono)
    first.workers["w1"] = WorkerState(name="w1", task="job", attempt=1, session="t-w1", started_at=clocks.mono,
                                      paused_for=30.0)
    assert first.pause("w1", None, on_screen=True) == clocks.wall + timedelta(seconds=60)  # rate_limit_wait
    assert first.pause("w1", None) is None, "paused already, and no better reset time"
    clocks.advance(10)
    reset = clocks.wall + timedelta(minutes=5)
    assert first.pause("w1", reset) == reset, "the agent's own reset time replaces the unknown one"
    clocks.advance(20)
    recorded = first.pause_fields("w1")
    assert recorded == {"paused_until": reset.isoformat(), "paused_at": (clocks.wall - timedelta(seconds=30))
                        .isoformat(), "paused_for": 30.0}

    clocks.advance(100)  # the supervisor is down for 100 s; the next one starts on a new monotonic clock
    clocks.mono = 5.0
    second = Supervisor(swarm_home, clock=lambda: clocks.wall, monotonic=lambda: clocks.mono)
    worker = second.workers["w1"] = WorkerState(name="w1", task="job", attempt=1, session="t-w1", started_at=0.0)
    second.resume_paused(worker, recorded)
    assert worker.paused_since == 5.0 - 130 and worker.resume_at == 5.0 + 180 and worker.paused_for == 30.0
    assert second.pause_fields("w1") == recorded, "the same pause, recorded the same way"
    clocks.advance(150)
    assert second.unpause("w1") and worker.paused_for == 30.0 + 280
    assert second.pause_fields("w1") == {"paused_until": None, "paused_at": None, "paused_for": 310.0}
    clocks.advance(100)
    late = WorkerState(name="w2", task="job", attempt=1, session="t-w2", started_at=0.0)
    second.resume_paused(late, recorded)  # its reset passed while the supervisor was down: due at once
    assert late.resume_at == clocks.mono

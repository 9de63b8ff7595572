"""Prompts queued for an interactive worker (STEER, replies): never typed into a busy agent, delivered once it is
idle; `swarm steer` queues them for interactive workers, and `swarm status` shows the queue."""

import json
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from agentclis import RefusingModel, agent_env
from claudepane import preconfigure, start_claude, user_turns, wait_for_composer
from conftest import run_cli
from swarmd.cli.view import status_view
from swarmd.operate import Operator
from swarmd.errors import SwarmError
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.workers.delivery import deliver_prompt
from swarmd.workers.panestate import PaneState, PaneWatcher
from swarmd.workers.promptqueue import MAX_QUEUED, PromptQueue
from swarmd.workers.tmux import TmuxServer
from swarmd.workers.warmpanes import WARM_MARK
from swarmkit import init_home, wait_until, write_plan

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


def test_a_steer_is_delivered_only_after_the_busy_agent_is_idle(agent_clis: dict[str, Path], swarm_home: SwarmHome,
                                                                 tmp_path: Path) -> None:
    swarm_home.ensure_dirs()
    tmux = TmuxServer(swarm_home.tmux_socket)
    locks = tmp_path / "locks"
    with RefusingModel(hold_timeout=120).running() as model:  # holds each answer until released: claude works
        config_dir, _ = start_claude(tmux, "agent", agent_clis["claude"], tmp_path / "claude", model.url)
        wait_for_composer(tmux, "agent")
        deliver_prompt(tmux, "agent", "TASK-1 start on the work", lock_dir=locks, timeout=60)
        watcher = PaneWatcher(tmux, "agent")
        wait_until(lambda: watcher.look().state == PaneState.WORKING, 60, "claude working")
        queue = PromptQueue(swarm_home.run_dir, "w1")
        queue.push("STEER-7 change course: use the v2 API;", sender="operator")
        for _ in range(10):  # ten looks at a busy agent: nothing typed into it
            assert queue.flush(tmux, "agent", lambda: watcher.look().state == PaneState.IDLE, lock_dir=locks,
                               timeout=60) == 0
        assert watcher.state == PaneState.WORKING and len(queue.items()) == 1
        assert not model.received("STEER-7")
        model.release.set()
        idle = lambda: watcher.look().state == PaneState.IDLE  # noqa: E731
        wait_until(lambda: queue.flush(tmux, "agent", idle, lock_dir=locks, timeout=60) == 1, 60,
                   "the steer delivered once claude is idle")
        assert queue.items() == []
        wait_until(lambda: model.received("STEER-7"), 60, "the steer sent to the model")
        wait_until(lambda: len(user_turns(config_dir)) >= 2, 60, "the steer in claude's transcript")
        turns = user_turns(config_dir)
        assert len(turns) == 2 and "TASK-1" in turns[0]
        assert "[steer from operator]\nSTEER-7 change course: use the v2 API;" in turns[1]


def test_a_queue_refuses_what_it_cannot_hold(tmp_path: Path) -> None:
    queue = PromptQueue(tmp_path, "w1")
    with pytest.raises(SwarmError, match="empty"):
        queue.push("  ")
    for n in range(MAX_QUEUED):
        queue.push(f"steer {n}")
    with pytest.raises(SwarmError, match="already has"):
        queue.push("one too many")
    assert [item.text for item in queue.items()][:2] == ["steer 0", "steer 1"]
    assert (queue.path.stat().st_mode & 0o777) == 0o600
    with pytest.raises(Exception, match="agent name"):
        PromptQueue(tmp_path, "../escape")


def test_prompts_queued_during_a_delivery_stay_for_the_next_one_in_order(tmp_path: Path) -> None:
    queue = PromptQueue(tmp_path, "w1")
    for text in ("one", "two"):
        queue.push(text)
    taken = queue.items()  # what a delivery read before it started
    queue.push("three")  # queued while it was on its way
    queue.remove(taken)
    assert [item.text for item in queue.items()] == ["three"]
    queue.set_note("held: someone's text")
    assert queue.note() == "held: someone's text" and (queue.note_path.stat().st_mode & 0o777) == 0o600
    queue.remove(queue.items())
    queue.set_note(None)
    assert queue.items() == [] and queue.note() is None and not queue.path.exists()


# An interactive worker whose pane shows claude's permission dialog (a captured screen) and waits.
INTERACTIVE = """
[profiles.tui]
command = "cat {dialog}; exec sleep 600"
mode = "interactive"
"""


def test_swarm_steer_queues_for_an_interactive_worker_and_status_shows_it(swarm_home: SwarmHome,
                                                                          tmp_path: Path) -> None:
    init_home(swarm_home, max_workers=1, stale=600)  # the pane sends no heartbeats: never stale in the test
    with swarm_home.config_file.open("a") as config:
        config.write(INTERACTIVE.format(dialog=Path(__file__).parent / "panes" / "claude-perm.txt"))
    plan = write_plan(tmp_path / "plan.json", [{"id": "job", "title": "a job", "description": "work",
                                                "profile": "tui"}])
    home = ["--home", str(swarm_home.root)]
    assert run_cli("swarm", "run", str(plan), *home).returncode == 0
    try:
        operator = Operator(swarm_home)
        worker = wait_until(lambda: [w.name for w in operator.status()["workers"] if w.pane == "alive"], 60,
                            "the worker running")[0]
        assert operator.steer(worker, "STEER-3 look at the tests") == "queued"
        steered = run_cli("swarm", "steer", worker, "STEER-4 and the docs", "--json", *home)
        assert steered.returncode == 0 and json.loads(steered.stdout) == {"id": "queued"}
        shown = json.loads(run_cli("swarm", "status", "--json", *home).stdout)["workers"][0]
        # an interactive worker's first prompt is its task, queued until the agent's composer shows
        assert shown["queued"][0].startswith("# Task job: a job")
        assert shown["queued"][1:] == ["STEER-3 look at the tests", "STEER-4 and the docs"]
        operator.reply(worker, "REPLY-5 use the v2 API")
        assert [item.kind for item in PromptQueue(swarm_home.run_dir, worker).items()] == \
            ["task", "steer", "steer", "reply"]
        console = Console(width=250, record=True)
        console.print(status_view(operator.status()))
        assert "4: # Task job" in console.export_text()
        # the supervisor looks at the pane at every step: a dialog, not an idle composer, so nothing is typed
        tmux = TmuxServer(swarm_home.tmux_socket)
        watcher = PaneWatcher(tmux, next(s for s in tmux.sessions() if WARM_MARK not in s))
        wait_until(lambda: watcher.look().state == PaneState.NEEDS_INPUT, 30, "the dialog on screen")
        assert "STEER-3" not in tmux.screen(watcher.session)
        assert len(operator.status()["workers"][0].queued) == 4
        refused = run_cli("swarm", "answer", worker, "Yes", *home)
        assert refused.returncode == 2 and "destructive" in refused.stderr and len(refused.stderr.splitlines()) == 1
        unknown = run_cli("swarm", "answer", worker, "perhaps", *home)
        assert unknown.returncode == 2 and "names no option" in unknown.stderr
        assert not any("supervisor error" in event.summary for event in Ledger(swarm_home).events())
    finally:
        run_cli("swarm", "down", "--teardown", *home)


def test_the_supervisor_delivers_a_steer_to_an_idle_interactive_claude(agent_clis: dict[str, Path],
                                                                       swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home, max_workers=1, stale=600)  # the pane sends no heartbeats: never stale in the test
    project = tmp_path  # a plan's task runs in the plan file's directory
    with RefusingModel(hold_timeout=0).running() as model:
        model.release.set()
        env = agent_env(tmp_path / "claude", model.url)
        preconfigure(Path(env["CLAUDE_CONFIG_DIR"]), project, env["ANTHROPIC_API_KEY"])
        with swarm_home.config_file.open("a") as config:
            config.write(f'\n[profiles.claude-tui]\ncommand = {json.dumps(str(agent_clis["claude"]))}\n'
                         'mode = "interactive"\n'
                         f'env = {{ {", ".join(f"{k} = {json.dumps(v)}" for k, v in env.items())} }}\n')
        plan = write_plan(tmp_path / "plan.json", [{"id": "job", "title": "a job", "description": "work",
                                                    "profile": "claude-tui"}])
        home = ["--home", str(swarm_home.root)]
        assert run_cli("swarm", "run", str(plan), *home).returncode == 0
        try:
            operator = Operator(swarm_home)
            worker = wait_until(lambda: [w.name for w in operator.status()["workers"] if w.pane == "alive"], 60,
                                "the worker running")[0]
            assert operator.steer(worker, "STEER-9 please also update the docs") == "queued"
            wait_until(lambda: model.received("STEER-9"), 120, "the steer delivered by the supervisor")
            wait_until(lambda: not operator.status()["workers"][0].queued, 60, "the queue emptied")
            turns = wait_until(lambda: user_turns(Path(env["CLAUDE_CONFIG_DIR"])), 60, "the turn in the transcript")
            # the worker's first prompt is its task (queued at its start); the steer comes after it, once each
            said = "\n\n".join(turns)
            task_at = said.index("[task from supervisor]\n# Task job: a job")
            assert said.count("STEER-9") == 1
            assert said.index("[steer from operator]\nSTEER-9 please also update the docs") > task_at
        finally:
            run_cli("swarm", "down", "--teardown", *home)

"""The supervisor's own looks at an interactive pane, for what an agent's hooks do not say: a worker whose pane
shows claude-code 2.1.332's permission dialog (a captured screen) and sends no hook mail, under the real
supervisor, is `needs_input` with the dialog's text and options, and the feed has one `question` for it; the
dialog would confirm `rm -rf`, so `swarm answer` refuses to pick "Yes" unasked and the question stays open.
(A usage-limit notice on the screen alone: tests/test_pause_recovery.py, with the real CLI.)"""

import json
from pathlib import Path

from conftest import run_cli
from protocol.event import EventType
from protocol.task import TaskStatus
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmkit import events, init_home, wait_until, write_plan

PROFILE = """
[profiles.perm]
command = "cat {screen}; exec sleep 600"
mode = "interactive"
"""


def test_a_dialog_on_the_screen_alone_makes_the_worker_needs_input_with_a_question(swarm_home: SwarmHome,
                                                                                   tmp_path: Path) -> None:
    init_home(swarm_home, max_workers=1, stale=600)  # the pane sends no heartbeats: never stale in the test
    with swarm_home.config_file.open("a") as config:
        config.write(PROFILE.format(screen=Path(__file__).parent / "panes" / "claude-perm.txt"))
    plan = write_plan(tmp_path / "plan.json", [{"id": "asks", "title": "asks", "description": "work",
                                                "profile": "perm"}])
    home = ["--home", str(swarm_home.root)]
    assert run_cli("swarm", "run", str(plan), *home).returncode == 0
    try:
        def shown() -> dict:
            workers = json.loads(run_cli("swarm", "status", "--json", *home).stdout)["workers"]
            return workers[0] if workers and workers[0]["question"] else {}
        asking = wait_until(shown, 30, "the worker shown waiting on its dialog")
        refused = run_cli("swarm", "answer", asking["name"], "Yes", *home)
        after = shown()
        status = Ledger(swarm_home).task("asks").status
    finally:
        run_cli("swarm", "down", "--teardown", *home)
    assert asking["agent_state"] == "needs_input", asking
    assert "rm -rf build" in asking["agent_detail"] and "Do you want to proceed?" in asking["agent_detail"]
    assert "Options: 1. Yes · 2. Yes, and always allow" in asking["agent_detail"]
    assert "destructive" in asking["agent_detail"] and asking["question"] == asking["agent_detail"]
    questions = [e for e in events(swarm_home) if e.type == EventType.QUESTION]
    assert len(questions) == 1 and questions[0].agent == asking["name"], "one question, asked once"
    assert questions[0].detail["kind"] == "dialog"
    assert questions[0].detail["options"][0] == "Yes" and questions[0].detail["options"][-1] == "No"
    assert refused.returncode == 2 and "destructive" in refused.stderr
    assert after.get("question") == asking["question"], "not answered: the question stays open"
    assert status in (TaskStatus.ASSIGNED, TaskStatus.IN_PROGRESS), "waiting on a dialog is not a failure"

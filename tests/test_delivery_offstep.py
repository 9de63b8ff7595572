"""Deliveries into panes run off the supervisor's step thread: a pane that never shows a pasted prompt holds up
neither another worker's mail nor its prompts; a person's unsent text in a composer holds that worker's prompts
(said in `swarm status`) until it is sent. The panes are composer TUIs (tests/droppingtui.py) under a real
supervisor and a real tmux server."""

import json
import logging
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from agentmail import PostOffice
from protocol.event import EventType
from protocol.messages import MessageType, make_message
from protocol.task import Task
from swarmd.cli.view import status_view
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.operate import Operator
from swarmd.supervisor.loop import Supervisor
from swarmd.supervisor.state import SUPERVISOR
from swarmd.workers.promptqueue import PromptQueue
from swarmd.workers.tmux import TmuxServer
from swarmkit import init_home, wait_until

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

TUI = Path(__file__).parent / "droppingtui.py"


def lines(out: Path) -> list[object]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def pasted(out: Path) -> list[str]:
    return [entry["pasted"] for entry in lines(out) if isinstance(entry, dict)]


def submitted(out: Path) -> list[str]:
    return [entry for entry in lines(out) if isinstance(entry, str)]


@pytest.fixture
def supervisor(swarm_home: SwarmHome, tmp_path: Path) -> Iterator[Supervisor]:
    """A supervisor serving in a thread, with two interactive tasks: `blind` (its pane never shows a paste) and
    `open` (its pane takes each prompt). A delivery's waits are long here: one that starts on the blind pane
    stays in flight for the whole test."""
    init_home(swarm_home, max_workers=2, stale=600)  # the panes send no heartbeats: never stale in the test
    with swarm_home.config_file.open("a") as config:
        for name, extra in (("blind", " --blind"), ("open", "")):
            command = f"{sys.executable} {TUI} {tmp_path / name}.jsonl{extra}"
            config.write(f'\n[profiles.{name}]\ncommand = {json.dumps(command)}\nmode = "interactive"\n')
    Ledger(swarm_home).add_tasks([Task(id=name, title=name, description="work", profile=name)
                                  for name in ("blind", "open")], "operator")
    sup = Supervisor(swarm_home)
    sup.deliveries.timeout = 600
    thread = threading.Thread(target=sup.run, daemon=True)
    thread.start()
    try:
        yield sup
    finally:
        sup.stop()
        TmuxServer(swarm_home.tmux_socket).kill_server()
        thread.join(60)


def test_a_pane_that_never_shows_a_prompt_holds_up_no_other_worker(supervisor: Supervisor, swarm_home: SwarmHome,
                                                                   tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="swarmd.supervisor")
    blind_out, open_out = tmp_path / "blind.jsonl", tmp_path / "open.jsonl"
    wait_until(lambda: pasted(blind_out), 60, "the blind pane's task prompt pasted (its delivery now waits)")
    wait_until(lambda: submitted(open_out), 60, "the other worker's task prompt delivered")
    ledger = Ledger(swarm_home)
    worker = ledger.task("open").assignee
    PostOffice(swarm_home.root, durable=False).send(
        make_message(MessageType.PROGRESS, worker, SUPERVISOR, {"task": "open", "step": "STEP-7"}))
    wait_until(lambda: any(e.type == EventType.PROGRESS and e.task == "open" for e in ledger.events()), 60,
               "the other worker's mail handled")
    assert Operator(swarm_home).steer(worker, "STEER-8 go on") == "queued"
    wait_until(lambda: any("STEER-8" in text for text in submitted(open_out)), 60, "its steer delivered")
    # all of that while the blind pane's first delivery is still in flight: not given up, not tried again
    assert len(pasted(blind_out)) == 1
    assert not [r for r in caplog.records if "not delivered" in r.getMessage()]
    blind = ledger.task("blind").assignee
    assert [item.kind for item in PromptQueue(swarm_home.run_dir, blind).items()] == ["task"]
    wait_until(lambda: [e.summary for e in ledger.events() if e.summary.startswith("delivered")]
               == [f"delivered 1 queued prompt(s) to {worker}"] * 2, 60, "both deliveries in the feed")


def test_a_persons_unsent_text_holds_the_queue_and_status_says_so(supervisor: Supervisor, swarm_home: SwarmHome,
                                                                  tmp_path: Path) -> None:
    open_out = tmp_path / "open.jsonl"
    wait_until(lambda: submitted(open_out), 60, "the task prompt delivered")
    operator = Operator(swarm_home)
    worker = Ledger(swarm_home).task("open").assignee
    tmux = TmuxServer(swarm_home.tmux_socket)
    session = supervisor.workers[worker].session
    tmux.send_keys(session, "NOTE-1 half a thought", enter=False)  # a person types, and does not send
    wait_until(lambda: "NOTE-1 half a thought" in tmux.screen(session), 30, "the person's text shown")
    operator.steer(worker, "STEER-2 use the v2 API")

    def shown() -> object:
        return next((w for w in operator.status()["workers"] if w.name == worker and w.queue_note), None)

    view = wait_until(shown, 60, "the held queue in swarm status")
    assert view.queue_note.startswith("held: the composer") and view.queued == ["STEER-2 use the v2 API"]
    console = Console(width=300, record=True)
    console.print(status_view(operator.status()))
    assert "1: STEER-2 use the v2 API (held: the composer" in console.export_text()
    assert submitted(open_out)[1:] == []  # nothing delivered while it holds
    tmux.press(session, "Enter")  # the person sends it; then the steer goes, as a turn of its own
    wait_until(lambda: len(submitted(open_out)) == 3, 60, "the person's text, then the steer")
    assert submitted(open_out)[1:] == ["NOTE-1 half a thought", "[steer from operator]\nSTEER-2 use the v2 API"]
    wait_until(lambda: shown() is None and not PromptQueue(swarm_home.run_dir, worker).items(), 60,
               "the queue and its note cleared")

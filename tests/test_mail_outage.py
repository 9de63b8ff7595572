"""Mail over NATS JetStream with the server down holds up no supervisor step: what needs no mail (an operator's
change on the board and the worker it stops, `swarm status`) goes on, dispatch waits, the feed says so, and all
goes on once the server is back."""

import json

from conftest import run_cli
from hostkit import HostedSwarm, loopback, running  # noqa: F401 - the fixture
from protocol.event import EventType
from swarmd.ledger.log import Ledger
from swarmkit import events, wait_until, write_plan

GATED = "while [ ! -e {gate} ]; do sleep 0.05; done; echo ran"


def said(swarm: HostedSwarm, down: bool) -> list:
    return [e for e in events(swarm.home) if e.type == EventType.CUSTOM and e.detail.get("mail_down") is down]


def test_with_the_mail_server_down_a_step_goes_on_without_mail(loopback: HostedSwarm) -> None:
    loopback.config(max_workers=1, local_workers=True, extra=f'transport = "{loopback.url}"')
    home = ["--home", str(loopback.home.root)]
    tasks = [{"id": "job", "title": "job", "max_attempts": 1, "description": GATED.format(gate=loopback.root / "no")},
             {"id": "next", "title": "next", "description": "echo next"}]
    assert run_cli("swarm", "run", str(write_plan(loopback.root / "plan.json", tasks)), *home).returncode == 0
    ledger = Ledger(loopback.home)
    worker = wait_until(lambda: ledger.task("job").status == "in_progress" and ledger.task("job").assignee, 60,
                        "the job to start (its ACCEPTED came over JetStream)")
    loopback.nats.kill()
    wait_until(lambda: said(loopback, True), 60, "the feed to say that mail is down")
    assert run_cli("swarm", "task", "update", "job", "--status", "cancelled", *home).returncode == 0
    wait_until(lambda: ledger.registry()[worker].status == "stopped", 60, "the cancelled job's worker to be stopped")
    assert not running(loopback.home.tmux_socket, f"t-{worker}")
    status = json.loads(run_cli("swarm", "status", "--json", *home).stdout)
    assert status["tasks"] == {"cancelled": 1, "open": 1}  # `next` waits: its assignment would go by mail
    assert [e.detail.get("mail_down") for e in said(loopback, True)] == [True]  # said once
    loopback.nats.restart()
    wait_until(lambda: ledger.task("next").status == "done", 90, "dispatch and mail to go on")
    assert len(said(loopback, True)) == 1 and len(said(loopback, False)) == 1

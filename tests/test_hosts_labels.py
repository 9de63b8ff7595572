"""A ready task whose labels no place offers (no worker host, nor this machine) says so once in its notes (the
feed, `swarm status`, `swarm board`), again only when what there is to say changes, and runs on the first host
that offers them all."""

import json

from conftest import run_cli
from hostkit import HostedSwarm, loopback  # noqa: F401 - the fixture
from protocol.event import EventType
from swarmd.hosts.link import NatsLink
from swarmd.hosts.streams import existing_ttl
from swarmd.hosts.wire import Layout
from swarmd.ledger.log import Ledger
from swarmd.ledger.waiting import unoffered
from swarmkit import events, wait_until, write_plan


def bucket_ttl(swarm: HostedSwarm) -> float | None:
    """The TTL of the swarm's hosts' bucket, None while it is not made."""
    link = NatsLink(swarm.url, name="probe").start()
    try:
        assert link.ever_connected.wait(30)
        return link.run(existing_ttl(link.js, Layout("t")))
    finally:
        link.close()


def said(swarm: HostedSwarm) -> list[tuple[str, str]]:
    """(kind, text) of the supervisor's notes on the job, in the feed's order."""
    return [(e.detail["kind"], e.detail["text"]) for e in events(swarm.home)
            if e.type == EventType.NOTE_ADDED and e.task == "job" and e.agent == "supervisor"]


def test_the_note_names_what_no_place_offers() -> None:
    offers = {"": [], "h1": ["linux"]}
    assert unoffered(["linux"], offers) is None
    assert "no host nor this machine offers the label gpu " in unoffered(["gpu", "linux"], offers)
    assert "no one host offers all of its labels gpu, linux" in unoffered(["linux", "gpu"], {"h1": ["linux"],
                                                                                            "h2": ["gpu"]})


def test_a_task_whose_labels_no_host_offers_says_so_once_and_runs_where_they_come(loopback: HostedSwarm) -> None:
    loopback.config(max_workers=1, local_workers=False, ttl=2.0)
    home = ["--home", str(loopback.home.root)]
    assert run_cli("swarm", "up", *home).returncode == 0  # the hosts' bucket is made with its TTL before they join
    wait_until(lambda: bucket_ttl(loopback) == 2.0, 60, "the supervisor to make the hosts' bucket")
    loopback.join("h1", slots=1, labels="linux")
    loopback.join("h2", slots=1, labels="gpu")
    loopback.wait_up("h1", "h2")  # each label offered, but by no one host
    plan = write_plan(loopback.root / "plan.json", [{"id": "job", "title": "job", "description": "echo ran",
                                                     "labels": ["gpu", "linux"]}])
    assert run_cli("swarm", "run", str(plan), *home).returncode == 0
    both, one = (unoffered(["gpu", "linux"], offers) for offers in ({"h1": ["linux"], "h2": ["gpu"]},
                                                                     {"h1": ["linux"]}))
    assert "no one host offers all of its labels gpu, linux" in both and "no host offers the label gpu " in one
    wait_until(lambda: said(loopback)[-1:] == [("blocker", both)], 60, "the note that no one host offers both")
    status = json.loads(run_cli("swarm", "status", "--json", *home).stdout)
    assert status["waiting"] == [{"task": "job", "note": both}]
    assert f"job {both}" in run_cli("swarm", "status", *home).stdout
    board = json.loads(run_cli("swarm", "board", "--json", *home).stdout)
    assert [n["text"] for n in board[0]["notes"]][-1] == both
    assert "waiting on" in run_cli("swarm", "board", *home, env={"COLUMNS": "300"}).stdout
    loopback.agents["h2"].kill()  # gone: its key expires, and gpu is offered nowhere
    loopback.agents["h2"].wait()
    wait_until(lambda: said(loopback)[-1:] == [("blocker", one)], 60, "the note to change")
    loopback.join("h3", slots=1, labels="gpu,linux")
    ledger = Ledger(loopback.home)
    wait_until(lambda: ledger.task("job").status == "done", 60, "the job to run on h3")
    spawned = [e.detail.get("host") for e in events(loopback.home) if e.type == EventType.WORKER_SPAWNED]
    assert spawned == ["h3"]
    notes = said(loopback)  # a note for each change of what the supervisor saw (a host's beat read late, say)
    assert notes[-1] == ("update", "its labels are offered now, by h3")
    assert all(a != b for a, b in zip(notes, notes[1:]))  # never said twice in a row: again only when it changed
    views = [{}, {"h1": ["linux"]}, {"h2": ["gpu"]}, {"h1": ["linux"], "h2": ["gpu"]}]
    assert {text for kind, text in notes[:-1]} <= {unoffered(["gpu", "linux"], v) for v in views}
    assert json.loads(run_cli("swarm", "status", "--json", *home).stdout)["waiting"] == []

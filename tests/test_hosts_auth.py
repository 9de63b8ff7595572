"""Per-host NATS logins (`swarm logins`): a host may publish only for its own workers, and the NATS server, not
only the supervisor, holds it to that."""

import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats.errors
import pytest
from nats.js.errors import APIError

from agentmail import PostOffice
from conftest import run_cli
from hostkit import HostedSwarm
from natskit import NatsServer
from protocol import MessageType, make_message
from swarmd.cli.doctor import OK, mail_transport
from swarmd.config import load_config
from swarmd.home import SwarmHome
from swarmd.hosts import bundles
from swarmd.hosts.client import HostsClient
from swarmd.hosts.directory import read_beats
from swarmd.hosts.link import NatsLink, read_credentials
from swarmd.hosts.logins import write_logins
from swarmd.hosts.names import HostError
from swarmd.hosts.relay import Relay
from swarmd.hosts.settings import HostsLink
from swarmd.hosts.streams import pull
from swarmd.hosts.wire import HostEvent, Layout, StopOrder
from swarmd.ledger.log import Ledger
from swarmkit import wait_until, write_plan


def make_logins(root: Path, *hosts: str) -> Path:
    return write_logins(root / "logins", swarm="t", hosts=list(hosts)).config.parent


def test_logins_are_private_files_and_the_block_names_no_one_else(tmp_path: Path) -> None:
    out = tmp_path / "nats"
    done = run_cli("swarm", "logins", "--host", "b", "--host", "a", "--swarm", "t", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    written = json.loads(done.stdout)
    files = [written["config"], written["supervisor"]["file"], *(h["file"] for h in written["hosts"].values())]
    assert sorted(Path(f).name for f in files) == ["authorization.conf", "host-a.login", "host-b.login",
                                                   "supervisor.login"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o700 and all(stat.S_IMODE(Path(f).stat().st_mode) == 0o600
                                                             for f in files)
    logins = {name: read_credentials(Path(h["file"])) for name, h in written["hosts"].items()}
    assert [login["user"] for login in logins.values()] == ["t.host.a", "t.host.b"]
    assert logins["a"]["password"] != logins["b"]["password"] and len(logins["a"]["password"]) >= 32
    assert logins["a"]["password"] not in done.stdout and logins["a"]["password"] in out.joinpath(
        "authorization.conf").read_text()
    again = run_cli("swarm", "logins", "--host", "a", "--swarm", "t", "--out", str(out))
    assert again.returncode == 2 and "--force" in again.stderr and read_credentials(Path(files[2])) == logins["a"]
    refused = run_cli("swarm", "logins", "--host", "a", "--host", "../a", "--out", str(tmp_path / "never"))
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "invalid host name" in refused.stderr and not (tmp_path / "never").exists()
    with pytest.raises(HostError, match="invalid swarm name"):
        write_logins(tmp_path / "never", swarm="T/x", hosts=["a"])
    assert not (tmp_path / "never").exists()


@pytest.fixture
def guarded(tmp_path: Path, swarm_home: SwarmHome) -> Iterator[HostedSwarm]:
    """Hosts on loopback whose NATS server takes the block `swarm logins` wrote for hosts a and b."""
    swarm = HostedSwarm(None, tmp_path, swarm_home, logins=make_logins(tmp_path, "a", "b"))
    try:
        yield swarm
    finally:
        swarm.close()


def test_a_host_with_its_login_runs_the_supervisors_workers(guarded: HostedSwarm) -> None:
    guarded.config(max_workers=1, local_workers=False)
    guarded.join("a", slots=1)
    plan = write_plan(guarded.root / "plan.json", [{"id": "job", "title": "job", "description": "echo ran on a"}])
    home = ["--home", str(guarded.home.root)]
    try:
        done = run_cli("swarm", "run", str(plan), *home, "--wait", "--timeout", "60s")
    finally:
        run_cli("swarm", "down", *home)
    assert done.returncode == 0, done.stdout + done.stderr
    task = Ledger(guarded.home).task("job")
    assert task.status == "done"
    worker = task.attempts[0].worker
    assert "ran on a" in (guarded.host_home("a") / "logs" / f"{worker}.log").read_text()
    config = load_config(guarded.home.config_file)
    assert list(read_beats(config, guarded.home)) == ["a"]  # `swarm hosts`: the supervisor's login reads the bucket
    relay = Relay(guarded.home, config)  # `swarm logs`: ... and asks a for the log, which a may answer
    try:
        assert "ran on a" in relay.read_log("a", worker).data
    finally:
        relay.close()


def login_link(server: NatsServer, logins: Path, who: str) -> NatsLink:
    """A started, connected link logged in as `who` (`supervisor` or a host's name), with its own inbox."""
    layout = Layout("t")
    if who == "supervisor":
        credentials, inbox = logins / "supervisor.login", layout.supervisor_inbox
    else:
        credentials, inbox = logins / f"host-{who}.login", layout.host_inbox(who)
    link = NatsLink(server.url, name=who, credentials=credentials, inbox=inbox).start()
    assert link.ever_connected.wait(30), f"{who} never connected"
    return link


@pytest.fixture
def two_hosts(tmp_path: Path) -> Iterator[tuple[NatsServer, Path]]:
    """A NATS server that takes the block `swarm logins` wrote for hosts a and b (its relative include)."""
    logins = make_logins(tmp_path, "a", "b")
    server = NatsServer(tmp_path / "nats", extra_config='include "../logins/authorization.conf"')
    try:
        yield server.start(), logins
    finally:
        server.stop()


async def fetch_bound(link: NatsLink, consumer: str, stream: str) -> list[Any]:
    """Pull one message through the existing consumer `consumer` (nats-py's bind: no lookup, straight to it)."""
    sub = await link.js.pull_subscribe_bind(durable=consumer, stream=stream)
    return await sub.fetch(1, timeout=1)


async def listen(link: NatsLink, subject: str, then: Any) -> Any:
    """Subscribe to `subject`, call `then()` (which publishes there), and wait a moment for a message."""
    sub = await link.nc.subscribe(subject)
    await link.nc.flush()
    then()
    return await sub.next_msg(timeout=1)


async def create_consumer(link: NatsLink, subject: str, config: dict[str, Any]) -> dict[str, Any]:
    """JetStream's answer to a consumer create request sent on `subject` with `config` in its body."""
    body = json.dumps({"stream_name": subject.split(".")[4], "config": config}).encode()
    return json.loads((await link.nc.request(subject, body, timeout=5)).data)


async def read_key(link: NatsLink, layout: Layout, key: str) -> bytes:
    return (await (await link.js.key_value(layout.bucket)).get(key)).value


async def consumer_made(link: NatsLink, stream: str, consumer: str) -> bool:
    try:
        await link.js.consumer_info(stream, consumer)
    except Exception:  # noqa: BLE001 - not yet
        return False
    return True


def event(host: str, event_id: str) -> bytes:
    return HostEvent(kind="started", id=event_id, host=host, worker="w1", attempt=1, pid=1).model_dump_json().encode()


def test_a_host_cannot_publish_put_or_pull_for_another(two_hosts: tuple[NatsServer, Path],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    server, logins = two_hosts
    layout = Layout("t")
    caplog.set_level(logging.WARNING, logger="swarmd.hosts")
    supervisor = HostsClient(HostsLink(server.url, logins / "supervisor.login", None), ttl=5.0, swarm="t",
                             wake=lambda: None).start()
    links = [supervisor.link]
    try:
        wait_until(lambda: supervisor.link.connected and supervisor.link.run(consumer_made(
            supervisor.link, layout.events_stream, layout.supervisor_consumer)), 30, "the supervisor's streams")
        b, a = login_link(server, logins, "b"), login_link(server, logins, "a")
        links += [b, a]
        b_orders = b.run(pull(b.js, layout.orders("b"), layout.host_consumer("b"), layout.orders_stream))
        b.run(b.js.publish(layout.host_key("b"), b"b's beat"))
        supervisor.send("b", StopOrder(id="stop.w9", worker="w9", attempt=1))

        refused = {  # what a tries, and the refusal the server sends it
            "b's events": (lambda: a.js.publish(layout.events("b"), event("b", "forged"), timeout=1),
                           f'publish to "{layout.events("b")}"'),
            "b's key": (lambda: a.js.publish(layout.host_key("b"), b"a says b is gone", timeout=1),
                        f'publish to "{layout.host_key("b")}"'),
            "b's orders": (lambda: fetch_bound(a, layout.host_consumer("b"), layout.orders_stream),
                           f'publish to "$JS.API.CONSUMER.MSG.NEXT.{layout.orders_stream}.host-b"'),
            "b's order subject": (lambda: listen(a, layout.orders("b"), lambda: supervisor.send("b", StopOrder(
                id="stop.w8", worker="w8", attempt=1))), f'subscription to "{layout.orders("b")}"'),
        }
        for what, (attempt, said) in refused.items():
            with pytest.raises(nats.errors.TimeoutError):
                a.run(attempt())
            wait_until(lambda: f"permissions violation for {said}".lower() in caplog.text, 10, f"{what} refused")
        with pytest.raises(APIError, match="rollup not permitted"):  # would wipe every other host's key
            a.run(a.js.publish(layout.host_key("a"), b"", headers={"Nats-Rollup": "all"}, timeout=5))
        own = f"$JS.API.CONSUMER.CREATE.{layout.orders_stream}.host-a.{layout.orders('a')}"
        for filters in ({"filter_subject": layout.orders("b")}, {"filter_subjects": [layout.orders("b")]}):
            answer = a.run(create_consumer(a, own, {"name": "host-a", "durable_name": "host-a",
                                                    "ack_policy": "explicit", **filters}))  # its own name, b's orders
            assert answer.get("error", {}).get("code") == 400, answer  # the server holds the filter to the subject's

        a.run(a.js.publish(layout.events("a"), event("a", "honest"), timeout=5))
        taken = wait_until(lambda: supervisor.take_events(), 30, "a's own event at the supervisor")
        assert [(e.host, e.id) for e, _ in taken] == [("a", "honest")]  # b's forged one, sent first, never came
        assert supervisor.link.run(read_key(supervisor.link, layout, "b")) == b"b's beat"
        assert [m.data for m in b.run(b_orders.fetch(1, timeout=5))] == [
            StopOrder(id="stop.w9", worker="w9", attempt=1).model_dump_json().encode()]  # still b's to take
    finally:
        for link in links:
            link.close()


def test_the_supervisors_login_carries_the_swarms_mail_on_the_same_server(two_hosts: tuple[NatsServer, Path],
                                                                          tmp_path: Path) -> None:
    server, logins = two_hosts
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "swarm.toml").write_text(f'name = "t"\ntransport = "{server.url}"\n'
                                                  f'transport_credentials = "{logins / "supervisor.login"}"\n')
    post = PostOffice(tmp_path / "home")
    try:
        post.register("supervisor", "supervisor")
        post.register("w1", "worker")
        sent = post.send(make_message(MessageType.STEER, "supervisor", "w1", {"text": "look again"},
                                      ack_required=True))
        claimed = post.mailbox("w1").claim()
        assert claimed is not None and claimed.message.id == sent.id
        post.ack("w1", claimed)
        assert [d.message.type for d in post.mailbox("supervisor").list()] == [MessageType.ACK]
        assert not (tmp_path / "home" / "mail").exists()  # nothing went by files
        assert mail_transport(SwarmHome(tmp_path / "home")).status == OK  # `swarm doctor` reaches it too
    finally:
        post.close()


def test_a_wrong_password_is_said_once_in_the_log(two_hosts: tuple[NatsServer, Path], tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    server, logins = two_hosts
    caplog.set_level(logging.WARNING, logger="swarmd.hosts")
    wrong = tmp_path / "wrong.login"
    wrong.write_text("t.host.a:not-the-password\n")
    wrong.chmod(0o600)
    link = NatsLink(server.url, name="a", credentials=wrong, inbox=Layout("t").host_inbox("a")).start()
    try:
        wait_until(lambda: "authorization violation" in caplog.text.lower(), 30, "the refusal in the log")
        assert not link.ever_connected.is_set()
        wait_until(lambda: server.log_file.read_text().count("authentication error") >= 3, 30, "two tries more")
        assert caplog.text.count("refused") == 1
    finally:
        link.close()


def test_a_host_reads_and_writes_attempt_bundles_with_its_login(two_hosts: tuple[NatsServer, Path],
                                                                 tmp_path: Path) -> None:
    """Remote worktrees travel through the swarm's object store: the supervisor's login makes it and puts a
    base; a host's login fetches it and puts its branch back; the supervisor reads that and deletes both."""
    server, logins = two_hosts
    supervisor, host = login_link(server, logins, "supervisor"), login_link(server, logins, "a")
    try:
        base, back, got = tmp_path / "base.bundle", tmp_path / "branch.bundle", tmp_path / "got"
        base.write_bytes(os.urandom(300_000))
        back.write_bytes(os.urandom(1000))
        supervisor.run(bundles.put_file(supervisor.js, "t", "base-1", base))
        host.run(bundles.get_file(host.js, "t", "base-1", got))
        assert got.read_bytes() == base.read_bytes()
        host.run(bundles.put_file(host.js, "t", "branch-1", back))
        supervisor.run(bundles.get_file(supervisor.js, "t", "branch-1", got))
        assert got.read_bytes() == back.read_bytes()
        for name in ("base-1", "branch-1"):
            supervisor.run(bundles.delete_object(supervisor.js, "t", name))
    finally:
        host.close()
        supervisor.close()

"""Worker hosts on one machine's loopback (no namespaces): the checks on names, addresses and credentials,
placement by free slots and labels, a remote worker's log and kill through its host, and `swarm up` taking up
the workers still running on a host."""

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import run_cli
from hostkit import HostedSwarm, loopback, running  # noqa: F401 - the fixture
from protocol.event import EventType
from protocol.task import Task
from swarmd.hosts.lease import CLOCK_RATE_BOUND, Lease, host_term, supervisor_grace
from swarmd.hosts.client import HostsClient
from swarmd.hosts.link import NatsLink, check_url, read_credentials, tls_context
from swarmd.hosts.names import HostError, validate_host_name
from swarmd.hosts.settings import HostsLink
from swarmd.hosts.streams import bucket_beats, ensure_bucket
from swarmd.hosts.wire import HostBeat, HostEvent, Layout, parse_order
from swarmd.supervisor.remote import LOCAL, RemoteWorkers
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.operate import Operator
from natskit import NatsServer, nats_server  # noqa: F401 - the fixture
from swarmkit import events, init_home, wait_until, write_plan


@pytest.mark.parametrize("name", ["", "..", "a.b", "A", "a/b", "-a", "x" * 33, "a b"])
def test_bad_host_names_are_refused(name: str) -> None:
    with pytest.raises(HostError, match="invalid host name"):
        validate_host_name(name)


@pytest.mark.parametrize("ttl", [1.0, 3.0, 15.0, 3600.0])
def test_a_host_ends_its_workers_before_the_supervisor_may_give_them_away(ttl: float) -> None:
    """The lease bound (Gray and Cheriton 1989): the host's term, stretched by the clocks' rate difference, plus
    a quarter of the TTL to end its workers, stays under the key's expiry plus the supervisor's grace, shrunk."""
    e = CLOCK_RATE_BOUND
    assert host_term(ttl) * (1 + e) + ttl / 4 <= (ttl + supervisor_grace(ttl)) * (1 - e)
    now = [100.0]
    lease = Lease(ttl, clock=lambda: now[0])
    lease.renew(sent=101.0, ttl=ttl)  # counted from the send, not from the acknowledgement
    now[0] = 101.0 + host_term(ttl) - 1e-6
    assert not lease.lapsed
    now[0] += 2e-6
    assert lease.lapsed


def test_orders_and_events_naming_a_bad_worker_or_host_are_refused_before_any_path() -> None:
    with pytest.raises(ValueError, match="invalid agent name"):
        parse_order(b'{"kind": "stop", "id": "s1", "worker": "../../etc", "attempt": 1}')
    with pytest.raises(ValueError, match="invalid host name"):
        HostEvent.model_validate({"kind": "mail", "id": "m1", "host": "h/1", "worker": "w1", "attempt": 1})


def test_addresses_carry_no_login_and_off_loopback_take_tls() -> None:
    assert check_url("nats://127.0.0.1:4222") and check_url("tls://10.1.2.3:4222")
    assert tls_context("nats://127.0.0.1:4222", None) is None
    assert tls_context("nats://10.1.2.3:4222", None) is not None  # never in the clear off this machine
    with pytest.raises(HostError, match="carries no login"):
        check_url("tls://me:secret@10.1.2.3:4222")
    with pytest.raises(HostError, match="bad NATS address"):
        check_url("http://10.1.2.3")


def test_credentials_come_from_a_private_file(tmp_path: Path) -> None:
    login = tmp_path / "login"
    login.write_text("h1:s3cret\n")
    login.chmod(0o644)
    with pytest.raises(HostError, match="readable by others"):
        read_credentials(login)
    login.chmod(0o600)
    assert read_credentials(login) == {"user": "h1", "password": "s3cret"}
    seed = tmp_path / "seed"
    seed.write_text("SUAMK2FG4MI6UE3ACF3FK3OIQBCEIEZV7NSWFFEW63UXMRLFM2XLAXK4GY\n")
    seed.chmod(0o600)
    assert read_credentials(seed) == {"nkeys_seed_str": seed.read_text().strip()}
    junk = tmp_path / "junk"
    junk.write_text("hello")
    junk.chmod(0o600)
    with pytest.raises(HostError, match="user:password"):
        read_credentials(junk)


def test_join_refuses_bad_input_in_one_line_before_making_a_home(tmp_path: Path) -> None:
    login = tmp_path / "login"
    login.write_text("a:b\n")
    login.chmod(0o640)
    home = tmp_path / "h"
    for args, said in ((["nats://127.0.0.1:1", "--name", "../up"], "invalid host name"),
                       (["nats://127.0.0.1:1", "--name", "h1", "--credentials", str(login)], "readable by others"),
                       (["nats://127.0.0.1:1", "--name", "h1", "--ssh", "-oProxyCommand=sh"], "invalid ssh destination")):
        result = run_cli("swarm", "host", "join", *args, "--home", str(home))
        assert result.returncode == 2 and said in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not home.exists()


def test_tasks_go_where_their_labels_are_offered_and_the_most_slots_are_free() -> None:
    places = {LOCAL: (1, []), "h1": (3, ["gpu"]), "h2": (2, [])}
    assert RemoteWorkers.place(Task(id="a", title="a"), places) == "h1"
    assert RemoteWorkers.place(Task(id="a", title="a", labels=["gpu"]), {**places, "h1": (1, ["gpu"])}) == "h1"
    assert RemoteWorkers.place(Task(id="a", title="a", labels=["gpu"]), {**places, "h1": (0, ["gpu"])}) is None
    assert RemoteWorkers.place(Task(id="a", title="a"), {LOCAL: (2, []), "h2": (2, [])}) == LOCAL


GATED = "echo hello from $SWARM_AGENT; while [ ! -e {gate} ]; do sleep 0.05; done"


def test_a_remote_workers_log_steer_reply_and_kill_go_through_its_host(loopback: HostedSwarm) -> None:
    loopback.config(max_workers=1, local_workers=False)
    loopback.join("h1", slots=1)
    plan = write_plan(loopback.root / "plan.json", [{"id": "job", "title": "job", "max_attempts": 1,
                                                     "description": GATED.format(gate=loopback.root / "never")}])
    assert run_cli("swarm", "run", str(plan), "--home", str(loopback.home.root)).returncode == 0
    ledger = Ledger(loopback.home)
    worker = wait_until(lambda: ledger.task("job").status == "in_progress" and ledger.task("job").assignee, 60,
                        "the job to run on h1")
    home = ["--home", str(loopback.home.root)]
    log = loopback.host_home("h1") / "logs" / f"{worker}.log"
    wait_until(lambda: log.exists() and "hello from" in log.read_text(), 30, "the worker's words on h1")
    assert f"hello from {worker}" in run_cli("swarm", "logs", worker, *home).stdout  # read from h1
    operator = Operator(loopback.home)  # the library API the CLI's status, steer and reply are thin over
    assert {w.name: w.pane for w in operator.status()["workers"]}[worker] == "on host h1"
    operator.steer(worker, "look at the flaky test")
    inbox = loopback.host_home("h1") / "mail" / worker
    wait_until(lambda: any("look at the flaky test" in p.read_text() for p in inbox.glob("*/*.json")), 30,
               "the STEER in the worker's mailbox on h1")
    operator.reply(worker, "use the other fixture")
    wait_until(lambda: any("use the other fixture" in p.read_text() for p in inbox.glob("*/*.json")), 30,
               "the HELP_RESPONSE in the worker's mailbox on h1")
    killed = run_cli("swarm", "kill", worker, "--hold", *home)
    assert killed.returncode == 0, killed.stderr
    wait_until(lambda: not running(loopback.tmux("h1"), f"t-{worker}"), 30, "h1 to end the killed worker")
    assert ledger.task("job").status == "blocked"


def test_swarm_up_takes_up_the_workers_still_running_on_a_host(loopback: HostedSwarm) -> None:
    loopback.config(max_workers=1, local_workers=False)
    loopback.join("h1", slots=1)
    gate = loopback.root / "gate"
    plan = write_plan(loopback.root / "plan.json", [{"id": "job", "title": "job",
                                                     "description": GATED.format(gate=gate)}])
    home = ["--home", str(loopback.home.root)]
    assert run_cli("swarm", "run", str(plan), *home).returncode == 0
    ledger = Ledger(loopback.home)
    worker = wait_until(lambda: ledger.task("job").status == "in_progress" and ledger.task("job").assignee, 60,
                        "the job to run on h1")
    assert run_cli("swarm", "down", *home).returncode == 0
    assert running(loopback.tmux("h1"), f"t-{worker}")
    assert run_cli("swarm", "up", *home).returncode == 0
    wait_until(lambda: any(e.type == EventType.SUPERVISOR_RECOVERED for e in events(loopback.home)), 30,
               "the supervisor to recover")
    gate.touch()
    wait_until(lambda: ledger.task("job").status == "done", 60, "the adopted worker's DONE")
    task = ledger.task("job")
    assert [a.worker for a in task.attempts] == [worker]  # taken up, not started again
    assert Counter(e.type for e in events(loopback.home))[EventType.TASK_COMPLETED] == 1


def test_the_nats_server_killed_and_restarted_loses_no_report(loopback: HostedSwarm) -> None:
    loopback.config(max_workers=1, local_workers=False)
    loopback.join("h1", slots=2)
    gate = loopback.root / "gate"
    tasks = [{"id": f"t{i}", "title": f"t{i}", "description": f"while [ ! -e {gate} ]; do sleep 0.05; done"}
             for i in range(4)]
    assert run_cli("swarm", "run", str(write_plan(loopback.root / "plan.json", tasks)), "--home",
                   str(loopback.home.root)).returncode == 0
    ledger = Ledger(loopback.home)
    wait_until(lambda: sum(t.status == "in_progress" for t in ledger.board().values()) == 2, 60, "two tasks on h1")
    loopback.nats.kill()
    gate.touch()  # both finish while the server is down: their DONEs wait on h1 until it is back
    outbox = loopback.host_home("h1") / "mail" / "supervisor"
    wait_until(lambda: len(list((outbox / "new").iterdir())) >= 2, 30, "the DONEs held on h1")
    loopback.nats.restart()
    wait_until(lambda: all(t.status == "done" for t in ledger.board().values()), 120, "every task done")
    assert Counter(e.task for e in events(loopback.home) if e.type == EventType.TASK_COMPLETED) == Counter(
        {t["id"]: 1 for t in tasks})
    assert all(len(t.attempts) == 1 for t in ledger.board().values())  # nobody was given up on


def test_a_swarm_begun_anew_on_the_same_server_and_host_runs_its_own_w1(loopback: HostedSwarm, tmp_path: Path) -> None:
    loopback.config(max_workers=1, local_workers=False)
    loopback.join("h1", slots=1)
    first = loopback.home
    plan = write_plan(tmp_path / "plan.json", [{"id": "job", "title": "job", "description": "echo ran"}])
    for home in (first.root, tmp_path / "again"):  # the same swarm name, worker names from w1 again
        if home != first.root:
            assert run_cli("swarm", "init", "--home", str(home)).returncode == 0
            home.joinpath("swarm.toml").write_text(first.config_file.read_text())
        try:
            done = run_cli("swarm", "run", str(plan), "--home", str(home), "--wait", "--timeout", "60s")
        finally:
            run_cli("swarm", "down", "--home", str(home))
        assert done.returncode == 0, done.stderr
        assert Ledger(SwarmHome(home)).task("job").attempts[0].worker == "w1"


def test_hosts_named_in_swarm_toml_while_the_supervisor_runs_are_taken_up(loopback: HostedSwarm) -> None:
    init_home(loopback.home, max_workers=1)
    home = ["--home", str(loopback.home.root)]
    plan = write_plan(loopback.root / "plan.json", [{"id": "job", "title": "job", "labels": ["gpu"],
                                                     "description": "echo on $SWARM_HOME"}])
    assert run_cli("swarm", "run", str(plan), *home).returncode == 0  # no machine offers gpu yet: it waits
    ledger = Ledger(loopback.home)
    wait_until(lambda: any(e.type == EventType.SUPERVISOR_STARTED for e in events(loopback.home)), 30,
               "the supervisor to start")
    loopback.join("h1", slots=1, labels="gpu")
    with loopback.home.config_file.open("a") as f:
        f.write(f'\n[hosts]\nurl = "{loopback.url}"\nttl = 3.0\n')
    wait_until(lambda: ledger.task("job").status == "done", 90, "the job to run on h1, taken up without a restart")
    assert any("[hosts] changed" in e.summary for e in events(loopback.home))
    assert (loopback.host_home("h1") / "logs").is_dir()


def _beat(name: str, slots: int = 1) -> bytes:
    """A heartbeat's value as host `name` puts it."""
    return HostBeat(name=name, slots=slots, pid=1, started=datetime.now(timezone.utc)).model_dump_json().encode()


def test_the_hosts_bucket_is_read_from_its_streams_own_subjects(nats_server: NatsServer) -> None:
    """What the supervisor and `swarm hosts` read: every live key's beat; a deleted key, one that names no host
    (a plain put, as a server without logins allows), and a beat put under another host's key, left out."""
    layout, link = Layout("t"), NatsLink(nats_server.url, name="t").start()

    async def put_and_read() -> dict[str, HostBeat]:
        kv = await ensure_bucket(link.js, layout, 30.0)
        for key in ("h1", "h-2", "gone", "Not.a.host"):
            await kv.put(key, _beat(key.lower().replace(".", "-")))
        await kv.put("h3", _beat("h1"))
        await kv.delete("gone")
        return await bucket_beats(link.js, kv, layout)
    try:
        assert link.ever_connected.wait(30)
        beats = link.run(put_and_read())
        assert sorted(beats) == ["h-2", "h1"] and beats["h1"].name == "h1" and beats["h-2"].name == "h-2"
    finally:
        link.close()


def test_a_host_up_when_the_supervisor_shortens_the_ttl_stays_up_for_the_old_ttls_term(nats_server: NatsServer) -> None:
    """Hosts that joined before any supervisor beat for the bucket's default TTL; a supervisor with a shorter
    `ttl` shortens it, and the server expires at once every key put more than that ago, live hosts' too (seen in
    a whole-suite run: a plan's tasks all placed on the one host whose key had survived). A host read before the
    shortening stays up until the old TTL's term is over; a host that has not beaten again by then is gone."""
    layout, link = Layout("t"), NatsLink(nats_server.url, name="t").start()

    async def put() -> float:
        await (await ensure_bucket(link.js, layout, 6.0)).put("h1", _beat("h1", slots=2))
        return time.monotonic()

    async def read() -> dict[str, HostBeat]:
        return await bucket_beats(link.js, await link.js.key_value(layout.bucket), layout)
    client = None
    try:
        assert link.ever_connected.wait(30)
        put_at = link.run(put())
        wait_until(lambda: time.monotonic() > put_at + 1.5, 30, "the key to be older than the supervisor's TTL")
        client = HostsClient(HostsLink(nats_server.url, None, None), ttl=1.0, swarm="t", wake=lambda: None).start()
        first = wait_until(lambda: client.snapshot().beats and client.snapshot(), 30, "the supervisor's first read")
        wait_until(lambda: client.snapshot() is not first, 30, "a read after that")
        assert "h1" not in link.run(read()), "the shortened TTL expired the key"
        assert "h1" in client.snapshot().beats and not client.snapshot().fresh
        wait_until(lambda: client.snapshot().fresh, 30, "the old TTL's term to be over")
        assert client.snapshot().beats == {}
    finally:
        if client is not None:
            client.close()
        link.close()


@pytest.mark.soak
def test_a_live_key_is_never_read_as_missing_beside_other_readers(nats_server: NatsServer) -> None:
    """A host read as missing is soon taken for down (its attempts run elsewhere). nats-py's `KeyValue.keys()`
    now and then lists none of a bucket's keys (its watcher ends before the first arrives: nats-io/nats.py#842;
    3 reads in 1,800 by six readers beside two busy loops, here); the stream's own subjects never should."""
    layout = Layout("t")
    links = [NatsLink(nats_server.url, name=f"r{i}").start() for i in range(6)]

    async def put(link: NatsLink) -> None:
        await (await ensure_bucket(link.js, layout, 30.0)).put("h1", _beat("h1"))

    async def reads(link: NatsLink, count: int) -> int:
        kv = await link.js.key_value(layout.bucket)
        return sum(["h1" not in await bucket_beats(link.js, kv, layout) for _ in range(count)])
    try:
        assert all(link.ever_connected.wait(30) for link in links)
        links[0].run(put(links[0]))
        with ThreadPoolExecutor(len(links)) as pool:
            assert list(pool.map(lambda link: link.run(reads(link, 500), timeout=300), links)) == [0] * len(links)
    finally:
        for link in links:
            link.close()

"""Worker hosts across a network: each host a network namespace with its own `swarm host join` and tmux server,
the NATS server (TLS, JetStream on files) on the supervisor's side, real processes throughout."""

import json
import subprocess
from collections import Counter

import pytest

from agentmail import PostOffice
from conftest import run_cli
from hostkit import HostedSwarm, hosted, network, running  # noqa: F401 - fixtures
from protocol.event import EventType
from protocol.messages import MessageType, make_message
from swarmd.ledger.log import Ledger
from swarmkit import events, wait_until, write_plan

GATED = 'if [ "$SWARM_ATTEMPT" = 1 ]; then while [ ! -e {gate} ]; do sleep 0.05; done; fi; echo {id} ran'


def run_plan(swarm: HostedSwarm, tasks: list[dict], *args: str) -> subprocess.CompletedProcess[str]:
    plan = write_plan(swarm.root / "plan.json", tasks)
    return run_cli("swarm", "run", str(plan), "--home", str(swarm.home.root), *args, timeout=300)


def completed(swarm: HostedSwarm) -> Counter:
    return Counter(e.task for e in events(swarm.home) if e.type == EventType.TASK_COMPLETED)


def spawned_on(swarm: HostedSwarm) -> dict[str, str]:
    """worker -> the host it started on."""
    return {e.detail["worker"]: e.detail.get("host", "") for e in events(swarm.home) if e.type == EventType.WORKER_SPAWNED}


def test_a_plan_over_two_hosts_is_done_with_every_task_once(hosted: HostedSwarm) -> None:
    hosted.config(max_workers=1, local_workers=False)
    hosted.join("h1", slots=2)
    hosted.join("h2", slots=2, labels="big")
    hosted.wait_up("h1", "h2")  # both there before the first task is placed: the spread is then checked
    tasks = [{"id": f"t{i}", "title": f"task {i}", "description": f"echo task {i}"} for i in range(6)]
    tasks.append({"id": "big", "title": "needs the big host", "description": "echo big", "labels": ["big"]})
    result = run_plan(hosted, tasks, "--wait", "--timeout", "120s")
    assert result.returncode == 0, result.stdout + result.stderr
    assert completed(hosted) == Counter({t["id"]: 1 for t in tasks})
    board = Ledger(hosted.home).board()
    assert all(len(board[t["id"]].attempts) == 1 for t in tasks)
    hosts = spawned_on(hosted)
    assert set(hosts.values()) == {"h1", "h2"}  # spread over both, none on the supervisor's machine
    assert hosts[board["big"].assignee] == "h2"
    listed = json.loads(run_cli("swarm", "hosts", "--json", "--home", str(hosted.home.root)).stdout)
    assert {(h["name"], h["up"], h["slots"], tuple(h["labels"])) for h in listed} == {
        ("h1", True, 2, ()), ("h2", True, 2, ("big",))}


def test_a_host_cut_off_has_its_attempts_run_elsewhere_and_its_late_word_refused(hosted: HostedSwarm) -> None:
    hosted.config(max_workers=1, local_workers=False)
    h1 = hosted.join("h1", slots=2)
    gates = {t: hosted.root / f"gate-{t}" for t in ("a", "b")}
    run_plan(hosted, [{"id": t, "title": t, "description": GATED.format(gate=gate, id=t)} for t, gate in gates.items()])
    ledger = Ledger(hosted.home)
    wait_until(lambda: all(t.status == "in_progress" for t in ledger.board().values()), 60, "both tasks on h1")
    first = {t.id: t.assignee for t in ledger.board().values()}
    hosted.join("h2", slots=2)
    h1.cut()
    wait_until(lambda: all(t.status == "done" for t in ledger.board().values()), 60, "both tasks done on h2")
    board = ledger.board()
    assert {spawned_on(hosted)[board[t].assignee] for t in gates} == {"h2"}
    assert [a.outcome for a in board["a"].attempts] == ["abandoned", "done"]  # no attempt spent on the cut host
    wait_until(lambda: not running(hosted.tmux("h1"), f"t-{first['a']}"), 60, "h1 to end its workers (lease)")
    # the DONE h1's worker on `a` wrote as its lease ran out, still in h1's outbox (written here as it would)
    PostOffice(hosted.host_home("h1")).send(make_message(MessageType.DONE, first["a"], "supervisor", {
        "task": "a", "summary": "a done, late"}, thread="a"))
    h1.restore()
    refused = wait_until(lambda: [e for e in events(hosted.home) if e.detail.get("fenced") == "DONE"], 60,
                         "the late DONE to be refused")
    assert refused[0].detail["worker"] == first["a"] and refused[0].detail["attempt"] == 1
    wait_until(lambda: not running(hosted.tmux("h1"), f"t-{first['b']}"), 60, "h1's stale worker on b to be stopped")
    assert completed(hosted) == Counter({"a": 1, "b": 1})
    assert Counter(e.task for e in events(hosted.home) if e.type == EventType.TASK_VALIDATING) == Counter(a=1, b=1)


LEASED = ('echo "start $SWARM_ATTEMPT $$" >> {trace}; trap \'echo "end $SWARM_ATTEMPT" >> {trace}; exit 1\' HUP TERM; '
          'if [ "$SWARM_ATTEMPT" = 1 ]; then while :; do sleep 0.05; done; fi; echo ran')


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie does not)."""
    try:
        return " Z " not in open(f"/proc/{pid}/stat").read().split(")", 1)[1][:4]
    except FileNotFoundError:
        return False


def test_a_host_cut_off_ends_its_workers_before_their_tasks_run_elsewhere(hosted: HostedSwarm) -> None:
    """The host's heartbeat is its lease: cut off, it ends its worker itself before the re-run starts on h2."""
    hosted.config(max_workers=1, local_workers=False)
    h1 = hosted.join("h1", slots=1)
    trace = hosted.root / "trace"
    run_plan(hosted, [{"id": "a", "title": "a", "description": LEASED.format(trace=trace)}])
    started = wait_until(lambda: trace.exists() and trace.read_text().split(), 60, "a to start on h1")
    pid = int(started[2])
    hosted.join("h2", slots=1)
    h1.cut()
    ledger = Ledger(hosted.home)
    wait_until(lambda: ledger.board()["a"].status == "done", 60, "a to be done on h2")
    assert [line.split()[:2] for line in trace.read_text().splitlines()] == [
        ["start", "1"], ["end", "1"], ["start", "2"]]  # the first attempt's process ended before the second began
    wait_until(lambda: not alive(pid), 10, "h1's worker process to be gone")
    order = [e.detail.get("host") if e.type == EventType.WORKER_SPAWNED else "down"
             for e in events(hosted.home)
             if e.type == EventType.WORKER_SPAWNED or (e.type == EventType.CUSTOM and "host h1 is down" in e.summary)]
    assert order == ["h1", "down", "h2"]
    assert [a.outcome for a in ledger.board()["a"].attempts] == ["abandoned", "done"]



QUICK = "sleep 0.$(( $(od -An -N1 -tu1 /dev/urandom) % 5 )); echo {id} ran"


@pytest.mark.soak
def test_sixty_tasks_over_three_hosts_with_one_cut_off_and_back_are_each_done_once(hosted: HostedSwarm) -> None:
    hosted.config(max_workers=1, local_workers=False)
    joined = {name: hosted.join(name, slots=3) for name in ("h1", "h2", "h3")}
    tasks = [{"id": f"t{i:02}", "title": f"t{i}", "description": QUICK.format(id=i)} for i in range(60)]
    run_plan(hosted, tasks)
    ledger = Ledger(hosted.home)
    wait_until(lambda: sum(t.status == "done" for t in ledger.board().values()) >= 15, 120, "a quarter done")
    joined["h2"].cut()
    wait_until(lambda: any("host h2 is down" in e.summary for e in events(hosted.home)), 60, "h2 given up on")
    wait_until(lambda: sum(t.status == "done" for t in ledger.board().values()) >= 40, 120, "two thirds done")
    joined["h2"].restore()
    wait_until(lambda: all(t.status == "done" for t in ledger.board().values()), 300, "every task done")
    assert completed(hosted) == Counter({t["id"]: 1 for t in tasks})
    assert Counter(e.task for e in events(hosted.home) if e.type == EventType.TASK_VALIDATING) == completed(hosted)


@pytest.mark.soak
def test_sixty_tasks_over_three_hosts_through_two_nats_restarts_are_each_done_once(hosted: HostedSwarm) -> None:
    hosted.config(max_workers=1, local_workers=False)
    for name in ("h1", "h2", "h3"):
        hosted.join(name, slots=3)
    tasks = [{"id": f"t{i:02}", "title": f"t{i}", "description": QUICK.format(id=i)} for i in range(60)]
    run_plan(hosted, tasks)
    ledger = Ledger(hosted.home)
    for done in (15, 35):
        wait_until(lambda: sum(t.status == "done" for t in ledger.board().values()) >= done, 120, f"{done} done")
        hosted.nats.restart()
    wait_until(lambda: all(t.status == "done" for t in ledger.board().values()), 300, "every task done")
    assert completed(hosted) == Counter({t["id"]: 1 for t in tasks})
    assert Counter(e.task for e in events(hosted.home) if e.type == EventType.TASK_VALIDATING) == completed(hosted)

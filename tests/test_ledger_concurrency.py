"""Many real processes appending to one ledger; a follower woken by another process's append."""

import json
import queue
import subprocess
import sys
import threading
from pathlib import Path

from protocol.event import EventType
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger

APPENDER = """
import sys
from protocol.event import EventType
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
home, name, count, durable = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
led = Ledger(SwarmHome.at(home), durable=durable)
print("ready", flush=True)
sys.stdin.readline()  # start together
for i in range(count):
    led.append(EventType.PROGRESS, name, summary=f"{name} {i}")
"""

ADDER = """
import sys
from protocol.task import Task
from swarmd.home import SwarmHome
from swarmd.ledger.log import DuplicateTask, Ledger
led = Ledger(SwarmHome.at(sys.argv[1]), durable=False)
print("ready", flush=True)
sys.stdin.readline()
won = []
for i in range(20):
    try:
        led.add_task(Task(id=f"t-{i}", title=sys.argv[2]), sys.argv[2])
        won.append(i)
    except DuplicateTask:
        pass
print(" ".join(map(str, won)), flush=True)
"""


def run_together(script: str, argvs: list[list[str]], timeout: float = 120) -> list[str]:
    """Start one process per argv, release them at once, and return their stdout."""
    procs = [subprocess.Popen([sys.executable, "-c", script, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) for argv in argvs]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0
        outputs.append(out)
    return outputs


def check_log(path: Path, names: list[str], count: int) -> None:
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    events = [json.loads(line) for line in lines[:-1]]
    assert [e["seq"] for e in events] == list(range(1, len(names) * count + 1))
    assert sorted(e["summary"] for e in events) == sorted(f"{n} {i}" for n in names for i in range(count))
    for name in names:  # each writer's own events stay in its order
        assert [e["summary"] for e in events if e["agent"] == name] == [f"{name} {i}" for i in range(count)]


def test_six_processes_append_without_loss_or_gaps(swarm_home: SwarmHome) -> None:
    names = [f"w{i}" for i in range(6)]
    run_together(APPENDER, [[str(swarm_home.root), n, "2000", "0"] for n in names])
    check_log(swarm_home.ledger_dir / "events.jsonl", names, 2000)
    assert Ledger(swarm_home).last_seq() == 12_000


def test_durable_appends_from_three_processes(swarm_home: SwarmHome) -> None:
    names = ["d1", "d2", "d3"]
    run_together(APPENDER, [[str(swarm_home.root), n, "40", "1"] for n in names])
    check_log(swarm_home.ledger_dir / "events.jsonl", names, 40)


def test_racing_task_adds_each_id_won_once(swarm_home: SwarmHome) -> None:
    outputs = run_together(ADDER, [[str(swarm_home.root), f"p{i}"] for i in range(4)])
    wins = [int(x) for out in outputs for x in out.split()]
    assert sorted(wins) == list(range(20))
    board = Ledger(swarm_home).board()
    assert sorted(board) == sorted(f"t-{i}" for i in range(20))


def test_follow_sees_another_process_append(swarm_home: SwarmHome) -> None:
    led = Ledger(swarm_home, durable=False)
    led.append(EventType.PROGRESS, "w1", summary="old")
    seen: queue.Queue = queue.Queue()
    stop = threading.Event()
    events = led.follow(since_seq=led.last_seq(), types=[EventType.FINDING], stop=stop)
    follower = threading.Thread(target=lambda: [seen.put(e) for e in events], daemon=True)
    follower.start()
    script = ("import sys; from protocol.event import EventType; from swarmd.home import SwarmHome; "
              "from swarmd.ledger.log import Ledger; led = Ledger(SwarmHome.at(sys.argv[1]), durable=False); "
              "led.append(EventType.PROGRESS, 'w2', summary='skipped'); "
              "led.append(EventType.FINDING, 'w2', summary='from afar')")
    subprocess.run([sys.executable, "-c", script, str(swarm_home.root)], check=True, timeout=60)
    event = seen.get(timeout=10)
    assert (event.summary, event.agent, event.seq) == ("from afar", "w2", 3)
    stop.set()
    follower.join(timeout=10)
    assert not follower.is_alive() and seen.empty()

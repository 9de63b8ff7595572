"""Benchmark the ledger: append rates, and reading the board of a million-event log.

Prints one JSON object. The big log is written directly, line by line in the ledger's own Event format
(over ~1,000 tasks with a realistic mix of events); the ledger then snapshots it as a normal read would,
a few thousand more events are appended through the API (the tail), and the board is read: in process
with `Ledger.board()`, and as a user runs it, `swarm board --json` and `swarm status --json` (the lean
path, `swarmd.entry`) beside the same commands through the click app and the models (`python -m swarmd`),
each the median of runs alternating with `python3 -c pass`, the same-run floor, with its ratio to it.
The lean and the models' outputs are checked to be byte for byte the same. `targets` says which goals
were met; the load average is printed before and after (the machine may be shared).

    python scripts/bench_ledger.py [--events 1000000] [--tasks 1000] [--home DIR]
"""

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from protocol.event import Event, EventType
from protocol.task import Task
from swarmd.ledger import board as board_fold
from swarmd.ledger import feed
from swarmd.config import write_default_config
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger

T0 = datetime(2030, 1, 1, tzinfo=UTC)
TARGET_CLI_S = 0.4  # `swarm board --json` and `swarm status --json` on a million events
CLI_RUNS = 5
# Per task lifecycle: create, several attempts of assign/start/progress.../finish; the rest is feed chatter.
CHATTER = [(EventType.PROGRESS, 60), (EventType.FILE_CHANGED, 20), (EventType.COST_UPDATE, 12),
           (EventType.FINDING, 3), (EventType.QUESTION, 1), (EventType.NOTE_ADDED, 2), (EventType.CUSTOM, 2)]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def append_rate(home: SwarmHome, durable: bool, count: int) -> float:
    led = Ledger(home, durable=durable)
    seconds, _ = timed(lambda: [led.append(EventType.PROGRESS, "bench", summary=f"step {i}") for i in range(count)])
    return round(count / seconds)


class LogWriter:
    """Writes Event lines straight to the log (the same JSON as Ledger.append), numbering them."""

    def __init__(self, f: Any) -> None:
        self.f, self.seq = f, 0

    def write(self, type: EventType, agent: str, task_id: str | None, summary: str, **detail: Any) -> None:
        self.seq += 1
        ts = T0 + timedelta(milliseconds=self.seq)
        event = Event(seq=self.seq, ts=ts, agent=agent, type=type, task=task_id, summary=summary, detail=detail)
        self.f.write(event.model_dump_json() + "\n")


def write_log(path: Path, events: int, tasks: int, rng: random.Random) -> int:
    per_task = events // tasks
    kinds, weights = zip(*CHATTER)
    with open(path, "w", buffering=1 << 20) as f:
        out = LogWriter(f)
        for n in range(tasks):
            tid, worker = f"t-{n + 1}", f"w{n % 16}"
            task = Task(id=tid, title=f"task {n + 1}: do the thing", tags=["bench"], created=T0, updated=T0)
            out.write(EventType.TASK_CREATED, "operator", tid, task.title, task=task.model_dump(mode="json"))
            attempts = 1 + n % 3
            for attempt in range(1, attempts + 1):
                out.write(EventType.TASK_ASSIGNED, "supervisor", tid, "assigned", worker=worker, attempt=attempt,
                          status="assigned")
                out.write(EventType.TASK_STARTED, worker, tid, "started", status="in_progress")
                for kind in rng.choices(kinds, weights, k=per_task // attempts - 4):
                    extra = {"kind": "update", "text": "a note"} if kind == EventType.NOTE_ADDED else {}
                    out.write(kind, worker, tid, f"{kind.value} on {tid}", **extra)
                last = attempt == attempts
                out.write(EventType.TASK_COMPLETED if last else EventType.TASK_FAILED, "supervisor", tid,
                          "done" if last else "failed", status="done" if last else "open", reason="tests failed")
        while out.seq < events:
            out.write(EventType.COST_UPDATE, "supervisor", None, "cost", usd=0.01)
        return out.seq


def full_replay(led: Ledger) -> dict[str, Task]:
    """The board folded from the first event, under the same conditions as a read (cyclic GC paused)."""
    gc.disable()
    try:
        return board_fold.fold(e for _, e in feed.read_events(led.path) if e is not None)
    finally:
        gc.enable()


def against_floor(commands: dict[str, list[str]], runs: int) -> dict[str, Any]:
    """Each command's median wall time over `runs`, alternating with `python3 -c pass` (the floor), and the
    ratio to the floor's median; and the last run's stdout of each."""
    floor: list[float] = []
    times: dict[str, list[float]] = {name: [] for name in commands}
    outputs: dict[str, bytes] = {}
    for _ in range(runs):
        for name, argv in commands.items():
            floor.append(timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True))[0])
            seconds, done = timed(lambda: subprocess.run(argv, capture_output=True, check=True))
            times[name].append(seconds)
            outputs[name] = done.stdout
    base = statistics.median(floor)
    result: dict[str, Any] = {"python_c_pass_s": round(base, 3)}
    for name, values in times.items():
        result[name] = {"median_s": round(statistics.median(values), 3), "min_s": round(min(values), 3),
                        "ratio_to_python": round(statistics.median(values) / base, 2)}
    result["outputs"] = outputs
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tasks", type=int, default=1_000)
    parser.add_argument("--tail", type=int, default=2_000, help="events appended after the snapshot")
    parser.add_argument("--home", type=Path, default=None, help="where to build the homes (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.home) as tmp:
        result: dict[str, Any] = {"loadavg_before": os.getloadavg()}
        result["append_per_s_durable"] = append_rate(SwarmHome(Path(tmp) / "durable"), True, 300)
        result["append_per_s_nondurable"] = append_rate(SwarmHome(Path(tmp) / "fast"), False, 10_000)
        home = SwarmHome(Path(tmp) / "big")
        home.ensure_dirs()
        write_default_config(home.config_file)
        led = Ledger(home, durable=False)
        result["generate_s"], written = timed(lambda: write_log(led.path, args.events, args.tasks, random.Random(7)))
        result["full_replay_s"], replayed = timed(lambda: full_replay(led))
        result["first_read_with_snapshot_s"], _ = timed(led.board)  # a long tail: the read writes the snapshot
        led.registry()  # as a supervisor's reads do: the registry's snapshot too
        for i in range(args.tail):
            led.append(EventType.PROGRESS, "w1", f"t-{i % args.tasks + 1}", f"late step {i}")
        result["board_read_s"], board = timed(led.board)  # a long-lived reader (the supervisor): the new events only
        result["fresh_board_read_s"], _ = timed(Ledger(home).board)  # a new reader: the snapshot, then the tail
        swarm = str(Path(sys.executable).parent / "swarm")
        at = ["--home", str(home.root)]
        subprocess.run([sys.executable, "-m", "swarmd", "board", "--json", *at], capture_output=True, check=True)
        cli = against_floor({  # the app's first read validated swarm.toml: the lean path answers from now on
            "swarm board --json": [swarm, "board", "--json", *at],
            "swarm status --json": [swarm, "status", "--json", *at],
            "models: swarm board --json": [sys.executable, "-m", "swarmd", "board", "--json", *at],
            "models: swarm status --json": [sys.executable, "-m", "swarmd", "status", "--json", *at],
        }, CLI_RUNS)
        outputs = cli.pop("outputs")
        assert outputs["swarm board --json"] == outputs["models: swarm board --json"], "lean and models differ"
        assert outputs["swarm status --json"] == outputs["models: swarm status --json"], "lean and models differ"
        printed = json.loads(outputs["swarm board --json"])
        assert board == full_replay(led) and len(printed) == len(board) == len(replayed)
        result["cli"] = cli
        result.update({
            "events": written + args.tail, "tasks": len(board),
            "log_mb": round(led.path.stat().st_size / 1e6, 1),
            "snapshot_mb": round((home.ledger_dir / "board.json").stat().st_size / 1e6, 1),
            "speedup_board_read_vs_full_replay": round(result["full_replay_s"] / result["board_read_s"], 1),
            "speedup_fresh_read_vs_full_replay": round(result["full_replay_s"] / result["fresh_board_read_s"], 1),
            "speedup_cli_vs_full_replay": round(result["full_replay_s"] / cli["swarm board --json"]["median_s"], 1),
        })
        for key, value in result.items():
            if key.endswith("_s"):
                result[key] = round(value, 3)
        result["targets"] = {
            f"cli_board_json_under_{TARGET_CLI_S:g}s": cli["swarm board --json"]["median_s"] < TARGET_CLI_S,
            f"cli_status_json_under_{TARGET_CLI_S:g}s": cli["swarm status --json"]["median_s"] < TARGET_CLI_S,
        }
        result["loadavg_after"] = os.getloadavg()
        print(json.dumps(result))


if __name__ == "__main__":
    main()

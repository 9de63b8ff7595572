"""Benchmark: how long one worker's queued prompt waits while another worker's pane swallows its paste.

Prints one JSON object. Two composer TUIs (tests/droppingtui.py) run in tmux panes on a private socket: `blind`
never shows what is pasted into it (its delivery waits `--timeout` s, then fails), `open` takes each prompt. Both
have a prompt queued; the time is from the moment both are due to `open`'s prompt being submitted:
- `sequential` (the baseline, the step thread delivering as it did): blind's delivery, then open's;
- `pooled`: both handed to `Deliveries` (the supervisor's pool, one delivery in flight per worker).
`--rounds` of each, interleaved; the medians and their ratio pooled/sequential.

    python scripts/bench_delivery_step.py [--rounds 5] [--timeout 2]
"""

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from swarmd.supervisor.queues import Deliveries
from swarmd.workers.promptqueue import PromptQueue
from swarmd.workers.tmux import TmuxServer

TUI = Path(__file__).resolve().parent.parent / "tests" / "droppingtui.py"


def submitted(out: Path) -> int:
    return sum(1 for line in out.read_text().splitlines() if line.startswith('"')) if out.exists() else 0


def wait_for(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("benchmark: a pane did not answer in time")
        time.sleep(0.005)


def one_round(tmux: TmuxServer, root: Path, outs: dict[str, Path], pooled: bool, timeout: float) -> float:
    queues = {name: PromptQueue(root / "run", name) for name in outs}
    for name, queue in queues.items():
        queue.push(f"prompt for {name}\nsecond line")
    before = submitted(outs["open"])
    jobs = {name: (lambda q=queue, s=name: q.flush(tmux, s, lambda: True, lock_dir=root / "locks", timeout=timeout))
            for name, queue in queues.items()}
    start = time.monotonic()
    if pooled:
        ended = threading.Event()
        deliveries = Deliveries(ended.set, timeout=timeout)
        for name in ("blind", "open"):
            deliveries.start(name, jobs[name])
        wait_for(lambda: submitted(outs["open"]) > before)
        took = time.monotonic() - start
        wait_for(lambda: not [n for n, f in deliveries.running.items() if not f.done()])
        deliveries.stop()
    else:
        for name in ("blind", "open"):
            try:
                jobs[name]()
            except Exception:  # noqa: BLE001 - the blind pane's delivery fails, as it would on the step thread
                pass
        wait_for(lambda: submitted(outs["open"]) > before)
        took = time.monotonic() - start
    queues["blind"].remove(queues["blind"].items())
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds each wait of a delivery may take")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="swarmd-bench-") as scratch:
        root = Path(scratch)
        tmux = TmuxServer(root / "tmux.sock")
        outs = {name: root / f"{name}.jsonl" for name in ("blind", "open")}
        try:
            for name, extra in (("blind", ["--blind"]), ("open", [])):
                tmux.spawn(name, [sys.executable, str(TUI), str(outs[name]), *extra], env={}, cwd=root)
            wait_for(lambda: all("❯" in tmux.screen(name) for name in outs))
            times: dict[str, list[float]] = {"sequential": [], "pooled": []}
            for _ in range(args.rounds):
                for way in times:
                    times[way].append(one_round(tmux, root, outs, way == "pooled", args.timeout))
        finally:
            tmux.kill_server()
    medians = {way: statistics.median(values) for way, values in times.items()}
    print(json.dumps({"rounds": args.rounds, "delivery_timeout_s": args.timeout,
                      "open_prompt_wait_s": {way: round(v, 4) for way, v in medians.items()},
                      "ratio_pooled_to_sequential": round(medians["pooled"] / medians["sequential"], 4)}))


if __name__ == "__main__":
    main()

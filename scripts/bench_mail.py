"""Benchmark Agent Mail delivery; print one JSON object.

Measures `PostOffice.send` throughput (durable and not); send-to-watch latency from the start of the send
call to receipt by a claiming watcher in another process (`latency_*`: non-durable sends, the transport
alone; `durable_latency_*`: with a durable send's fsyncs included); and the floor: a bare loop of write + fsync + rename
of the same bytes, with no validation and no lock; and the supervisor's drain of a backlog of PROGRESS
messages (1k, 4k, 16k: ms a message should stay flat) against a bare loop that lists, reads, parses and
moves the same files. Run: python scripts/bench_mail.py [--messages N] [--drain-sizes 1000,4000,16000]
"""

import argparse
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from protocol import Message, MessageType, make_message

from agentmail import PostOffice
from agentmail.groupcommit import GroupCommit


def _message(i: int) -> Message:
    return make_message(MessageType.PROGRESS, "bench-sender", "bench-inbox",
                        {"task": "bench-task", "step": f"step {i}", "context_pct": 40, "files": ["a.py", "b.py"]})


def send_throughput(root: Path, count: int, *, durable: bool) -> float:
    """Messages per second through PostOffice.send (messages built beforehand, as a caller would)."""
    po = PostOffice(root / ("durable" if durable else "fast"), durable=durable)
    po.register("bench-inbox")
    messages = [_message(i) for i in range(count)]
    start = time.perf_counter()
    for message in messages:
        po.send(message)
    return count / (time.perf_counter() - start)


def _sender(home: str, count: int, index: int, start) -> None:  # type: ignore[no-untyped-def]
    """Child process: once every sender is ready (the barrier), send `count` durable messages to one mailbox."""
    po = PostOffice(home, durable=True)
    messages = [_message(index * count + i) for i in range(count)]
    start.wait()
    for message in messages:
        po.send(message)


def concurrent_send_throughput(root: Path, count: int, senders: int) -> tuple[float, float]:
    """(messages per second, all senders together; flushes per message) for `senders` processes each sending
    `count` durable messages to the same mailbox at once (their flushes are shared by group commit: without
    it, a message costs two, one for its bytes and one for its rename)."""
    home = root / f"concurrent-{senders}"
    PostOffice(home).register("bench-inbox")
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(senders + 1)
    children = [ctx.Process(target=_sender, args=(str(home), count, i, start)) for i in range(senders)]
    for child in children:
        child.start()
    start.wait()  # every child has imported and built its messages: the clock starts with the sending
    began = time.perf_counter()
    for child in children:
        child.join()
    elapsed = time.perf_counter() - began
    flushes = GroupCommit(str(home / "mail" / "bench-inbox"), nullcontext).state().flushes
    return senders * count / elapsed, flushes / (senders * count)


def floor_throughput(root: Path, count: int, *, dir_fsync: bool) -> float:
    """Bare write + fsync + rename of the same bytes (optionally + fsync of the target directory)."""
    tmp, new = root / "floor" / "tmp", root / "floor" / "new"
    tmp.mkdir(parents=True, exist_ok=True)
    new.mkdir(exist_ok=True)
    payload = _message(0).to_json().encode()
    start = time.perf_counter()
    for i in range(count):
        src = tmp / f"{i}-{dir_fsync}"
        fd = os.open(src, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.write(fd, payload)
        os.fsync(fd)
        os.close(fd)
        os.rename(src, new / f"{i:012d}-{dir_fsync}.json")
        if dir_fsync:
            dfd = os.open(new, os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(dfd)
            os.close(dfd)
    return count / (time.perf_counter() - start)


def _watcher(home: str, ready, receipts) -> None:  # type: ignore[no-untyped-def]
    """Child process: report (message id, receipt time) for each message as the watch yields it."""
    mailbox = PostOffice(home, durable=False).mailbox("bench-inbox")
    ready.set()
    for delivered in mailbox.watch(claim=True):
        receipts.send((delivered.message.id, time.monotonic_ns()))
        if delivered.message.body.step == "stop":
            return


def watch_latency(root: Path, count: int, *, durable: bool) -> list[float]:
    """Milliseconds from the start of each send call to its receipt by a watcher (claiming) in another process."""
    home = root / f"latency-{durable}"
    po = PostOffice(home, durable=durable)
    po.register("bench-inbox")
    ctx = mp.get_context("spawn")
    ready, (receive, report) = ctx.Event(), ctx.Pipe(duplex=False)
    child = ctx.Process(target=_watcher, args=(str(home), ready, report))
    child.start()
    ready.wait(60)
    latencies = []
    for i in range(count + 1):
        message = _message(i) if i < count else make_message(
            MessageType.PROGRESS, "bench-sender", "bench-inbox", {"task": "bench-task", "step": "stop"})
        started = time.monotonic_ns()
        po.send(message)
        message_id, received = receive.recv()
        assert message_id == message.id, "watcher reported another message"
        if i < count:
            latencies.append((received - started) / 1e6)
    child.join(60)
    return latencies


def drain(root: Path, count: int) -> tuple[float, float]:
    """(supervisor, floor): ms a message to drain a backlog of `count` PROGRESS messages.

    The supervisor handles each (a ledger event) and claims it, in bounded batches, as its loop does; the
    floor lists `new/` once, reads and parses each file and renames it into `cur/`.
    """
    from swarmd.home import SwarmHome, init_home
    from swarmd.supervisor.loop import SUPERVISOR, Supervisor

    home = SwarmHome(root / f"drain-{count}")
    init_home(home)
    home.config_file.write_text("durable = false\n")
    supervisor = Supervisor(home)
    post = PostOffice(home.root, durable=False)
    post.register("bench-sender", role="worker")
    for i in range(count):
        post.send(make_message(MessageType.PROGRESS, "bench-sender", SUPERVISOR, {"task": "t", "step": f"s{i}"}))
    start = time.perf_counter()
    while supervisor.handle_mail():
        pass
    drained = time.perf_counter() - start
    supervisor.checks.shutdown()
    assert not supervisor.mailbox.list(), "the backlog was not drained"
    return drained * 1000 / count, _floor_drain(root / f"floor-drain-{count}", count) * 1000 / count


def _floor_drain(mailbox: Path, count: int) -> float:
    """Seconds for a bare drain of `count` message files: one listing, then read, parse and rename each."""
    new, cur = mailbox / "new", mailbox / "cur"
    new.mkdir(parents=True)
    cur.mkdir()
    for i in range(count):
        (new / f"{i:012d}-m{i}.json").write_text(_message(i).to_json())
    start = time.perf_counter()
    for name in sorted(os.listdir(new)):
        json.loads((new / name).read_bytes())
        os.rename(new / name, cur / name)
    return time.perf_counter() - start


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages per throughput run")
    parser.add_argument("--latency-messages", type=int, default=1000, help="messages for the latency run")
    parser.add_argument("--drain-sizes", default="1000,4000,16000", help="backlog sizes for the drain run")
    args = parser.parse_args()
    load_before = os.getloadavg()
    sizes = [int(size) for size in args.drain_sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-mail-", dir="/tmp") as tmp:
        root = Path(tmp)
        floor = floor_throughput(root, args.messages, dir_fsync=False)
        floor_dir = floor_throughput(root, args.messages, dir_fsync=True)
        durable = send_throughput(root, args.messages, durable=True)
        concurrent, flushes_per_message = concurrent_send_throughput(root, args.messages // 8, senders=8)
        fast = send_throughput(root, args.messages, durable=False)
        latencies = watch_latency(root, args.latency_messages, durable=False)
        durable_latencies = watch_latency(root, args.latency_messages, durable=True)
        drains = {size: drain(root, size) for size in sizes}
    print(json.dumps({
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "messages": args.messages,
        "payload_bytes": len(_message(0).to_json()),
        "durable_send_msgs_per_s": round(durable),
        "nondurable_send_msgs_per_s": round(fast),
        "floor_write_fsync_rename_msgs_per_s": round(floor),
        "floor_with_dir_fsync_msgs_per_s": round(floor_dir),
        "durable_over_floor": round(durable / floor, 3),
        "durable_over_floor_with_dir_fsync": round(durable / floor_dir, 3),
        "durable_8_senders_msgs_per_s": round(concurrent),
        "durable_8_senders_over_single_writer_floor": round(concurrent / floor, 3),
        "durable_8_senders_flushes_per_message": round(flushes_per_message, 3),
        "latency_messages": len(latencies),
        "latency_p50_ms": round(statistics.median(latencies), 3),
        "latency_p99_ms": round(_percentile(latencies, 0.99), 3),
        "durable_latency_p50_ms": round(statistics.median(durable_latencies), 3),
        "durable_latency_p99_ms": round(_percentile(durable_latencies, 0.99), 3),
        "drain_ms_per_message": {str(n): round(d[0], 4) for n, d in drains.items()},
        "drain_floor_ms_per_message": {str(n): round(d[1], 4) for n, d in drains.items()},
        "drain_over_floor": {str(n): round(d[0] / d[1], 2) for n, d in drains.items()},
        "drain_largest_over_smallest_per_message": round(drains[max(sizes)][0] / drains[min(sizes)][0], 2),
        "targets": {"group_commit_above_single_writer_floor": concurrent > floor,
                    "drain_linear_within_1_5x": drains[max(sizes)][0] <= 1.5 * drains[min(sizes)][0],
                    "durable_ge_half_floor": durable >= 0.5 * floor,
                    "p50_lt_2ms": statistics.median(latencies) < 2.0},
    }))


if __name__ == "__main__":
    main()

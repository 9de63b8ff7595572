"""Benchmark a keystroke's round trip through a host agent's terminal relay against a tmux client attached on the
same machine, in the same run; print one JSON object.

A tmux session runs `cat` on a private tmux server. Local: a tmux client in a pty of this process (what `swarm
attach` execs for a worker of this machine); one short burst of keys written into the pty, timed until the pane's echo of it is
drawn back. Relay: the host agent's `Terminals` (the real one, on a NatsLink to a real nats-server on 127.0.0.1)
attach a tmux client in their own pty; the same keys published on the terminal's `in` subject, timed until its echo
arrives on `out` (the operator's side of `swarm attach` without its terminal). `ratio` is relay over local (how
many times slower), p50 and p99 in ms.
Run: python scripts/bench_attach.py [--keys N]
"""

import argparse
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from natskit import NatsServer  # noqa: E402
from swarmd.hosts.link import NatsLink  # noqa: E402
from swarmd.hosts.terminal import Terminals, set_size  # noqa: E402
from swarmd.hosts.wire import AttachRequest, Layout, RpcReply  # noqa: E402
from swarmd.workers.tmux import TmuxServer  # noqa: E402

TIMEOUT = 10.0  # seconds one echo may take before the run fails


def token(i: int) -> bytes:
    """What is typed the `i`th time: a few keys at once, unlike anything else on the screen."""
    return f"q{i:04d}z".encode()


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 3),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3)}


def local(tmux: TmuxServer, session: str, keys: int) -> list[float]:
    """Round trips through a tmux client in a pty of this process."""
    master, slave = os.openpty()
    set_size(slave, 24, 80)
    client = subprocess.Popen(tmux.attach_argv(session), stdin=slave, stdout=slave, stderr=slave,
                              start_new_session=True, env={**os.environ, "TERM": "xterm-256color"})
    os.close(slave)
    try:
        drain(master, b"", TIMEOUT)  # the first redraw
        samples = []
        for i in range(keys):
            key = token(i)
            start = time.perf_counter()
            os.write(master, key)
            drain(master, key, TIMEOUT)
            samples.append(time.perf_counter() - start)
        return samples
    finally:
        client.terminate()
        client.wait(10)
        os.close(master)


def drain(fd: int, wanted: bytes, timeout: float) -> None:
    """Read `fd` until `wanted` shows (or, with b"", until it has been quiet a moment after drawing)."""
    deadline, seen = time.monotonic() + timeout, b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2 if not wanted else max(0.0, deadline - time.monotonic()))
        if not ready:
            if not wanted and seen:
                return
            continue
        seen += os.read(fd, 65536)
        if wanted and wanted in seen:
            return
    raise TimeoutError(f"no {wanted!r} within {timeout} s")


def relay(url: str, tmux: TmuxServer, session: str, keys: int) -> list[float]:
    """Round trips through the host agent's terminal relay, on two NATS connections (host and operator)."""
    layout = Layout("bench")
    host = NatsLink(url, name="bench-host").start()
    operator = NatsLink(url, name="bench-operator").start()
    try:
        host.ever_connected.wait(TIMEOUT)
        operator.ever_connected.wait(TIMEOUT)
        terminals = Terminals(host, layout, "h1", tmux, lambda worker: session)
        host.run(terminals.listen())
        sid = "bench0001"
        arrived: list[bytes] = []
        got = threading.Condition()

        async def heard(msg) -> None:  # noqa: ANN001 - nats-py's Msg
            with got:
                arrived.append(msg.data)
                got.notify_all()

        async def open_() -> RpcReply:
            await operator.nc.subscribe(layout.term("h1", sid, "out"), cb=heard)
            request = AttachRequest(worker="w1", term=sid, rows=24, cols=80)
            reply = await operator.nc.request(layout.term_open("h1"), request.model_dump_json().encode(), timeout=5)
            return RpcReply.model_validate_json(reply.data)

        assert operator.run(open_()).ok
        samples = []
        for i in range(keys):
            key = token(i)
            with got:
                arrived.clear()
            start = time.perf_counter()
            operator.run(operator.nc.publish(layout.term("h1", sid, "in"), key))
            with got:
                if not got.wait_for(lambda: any(key in data for data in arrived), TIMEOUT):
                    raise TimeoutError(f"no echo of {key!r} through the relay")
            samples.append(time.perf_counter() - start)
        terminals.close()
        return samples
    finally:
        operator.close()
        host.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-attach-") as scratch:
        root = Path(scratch)
        tmux = TmuxServer(root / "tmux.sock")
        server = NatsServer(root / "nats").start()
        try:
            tmux.spawn("w1", ["cat"], env={}, cwd=root, width=80, height=24)
            local_samples = local(tmux, "w1", args.keys)
            relay_samples = relay(server.url, tmux, "w1", args.keys)
        finally:
            server.stop()
            subprocess.run(["tmux", "-S", str(root / "tmux.sock"), "kill-server"], capture_output=True, check=False)
    out = {"keys": args.keys, "local": summary(local_samples), "relay": summary(relay_samples)}
    out["ratio"] = {k: round(out["relay"][k] / out["local"][k], 2) for k in ("p50_ms", "p99_ms")}
    print(json.dumps(out))


if __name__ == "__main__":
    main()

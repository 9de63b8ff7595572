"""The swarm's MCP server against a bare MCP SDK server with one tool, in the same run: start-up to the first
answered tools/list (`swarm mcp` and `python -m swarmd.mcp`, as workers start it), a tool call's latency
(p50/p99), and the memory (PSS) of 20 workers' servers at once.

    python scripts/bench_mcp.py [--starts 5] [--calls 200] [--servers 20]

Each server is a real subprocess spoken to over stdio (JSON-RPC lines: initialize, tools/list, tools/call).
Prints one JSON object; ratios are ours over the bare server's.
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
from typing import Any

from protocol.agent import AgentStatus, RegistryEntry
from swarmd.home import SwarmHome, init_home
from swarmd.ledger.log import Ledger
from swarmd.tokens import TOKEN_ENV, issue_token

BARE = '''from mcp.server import MCPServer
server = MCPServer("bare", log_level="WARNING")
@server.tool()
def ping() -> str:
    return "pong"
server.run("stdio")
'''
SWARM = str(Path(sys.executable).parent / "swarm")


class Server:
    """A stdio MCP server subprocess and a minimal JSON-RPC client for it."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
                                     bufsize=1)
        self.next_id = 0

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        self._send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params or {}})
        while True:
            line = self.proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise RuntimeError(f"server {self.proc.args} ended: exit {self.proc.wait()}")
            reply = json.loads(line)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def _send(self, message: dict[str, Any]) -> None:
        self.proc.stdin.write(json.dumps(message) + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]

    def ready(self) -> list[str]:
        """Handshake, then the tool names (the first answered tools/list)."""
        self.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                    "clientInfo": {"name": "bench", "version": "1"}})
        self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return [t["name"] for t in self.request("tools/list")["tools"]]

    def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return self.request("tools/call", {"name": name, "arguments": arguments})

    def pss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))

    def close(self) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def make_home(root: Path, workers: int) -> tuple[SwarmHome, list[dict[str, str]]]:
    """A home with a few tasks and `workers` registered workers; the environment each one's server gets."""
    home = SwarmHome(root / "home")
    init_home(home, project=root)
    ledger = Ledger(home, durable=False)
    for n in range(20):
        ledger.add_new_task({"title": f"task {n}", "tags": ["bench"]}, "operator")
    envs = []
    for n in range(1, workers + 1):
        name = f"w{n}"
        ledger.register_agent(RegistryEntry(name=name, status=AgentStatus.BUSY), "supervisor")
        envs.append({**os.environ, "SWARM_HOME": str(home.root), "SWARM_AGENT": name,
                     TOKEN_ENV: issue_token(home, name)})
    return home, envs


def start_time(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    server = Server(argv, env)
    server.ready()
    elapsed = time.perf_counter() - started
    server.close()
    return elapsed


def latencies(server: Server, name: str, arguments: dict[str, Any], calls: int) -> dict[str, float]:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        result = server.call(name, arguments)
        times.append((time.perf_counter() - started) * 1000)
        assert not result.get("isError"), result
    times.sort()
    return {"p50_ms": round(statistics.median(times), 3), "p99_ms": round(times[int(len(times) * 0.99) - 1], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--servers", type=int, default=20)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home, envs = make_home(Path(tmp), opts.servers)
        bare_script = Path(tmp) / "bare.py"
        bare_script.write_text(BARE)
        bare, ours = [sys.executable, str(bare_script)], [sys.executable, "-m", "swarmd.mcp"]
        cli = [SWARM, "mcp", "--home", str(home.root)]
        runs: dict[str, list[float]] = {"bare": [], "swarm_mcp": [], "python_m_swarmd_mcp": []}
        for _ in range(opts.starts):  # interleaved, so that a busy moment weighs on all three alike
            runs["bare"].append(start_time(bare, envs[0]))
            runs["swarm_mcp"].append(start_time(cli, envs[0]))
            runs["python_m_swarmd_mcp"].append(start_time(ours, envs[0]))
        start = {k: round(statistics.median(v), 3) for k, v in runs.items()}

        bare_server, our_server = Server(bare, envs[0]), Server(ours, envs[0])
        bare_server.ready(), our_server.ready()
        calls = {"bare_ping": latencies(bare_server, "ping", {}, opts.calls),
                 "board_list_tasks": latencies(our_server, "board_list_tasks", {"tag": "bench"}, opts.calls),
                 "registry_heartbeat": latencies(our_server, "registry_heartbeat", {}, opts.calls)}
        bare_server.close(), our_server.close()

        memory = {}
        for label, argv in (("bare", bare), ("swarm", ours)):
            servers = [Server(argv, env) for env in envs]
            for server in servers:
                server.ready()
            memory[label] = sum(s.pss_kib() for s in servers) // 1024
            for server in servers:
                server.close()
    print(json.dumps({
        "startup_to_first_tools_list_s": start,
        "startup_ratio_swarm_mcp_over_bare": round(start["swarm_mcp"] / start["bare"], 2),
        "startup_ratio_python_m_over_bare": round(start["python_m_swarmd_mcp"] / start["bare"], 2),
        "tool_call_latency": calls,
        "call_p50_ratio_board_list_over_bare": round(calls["board_list_tasks"]["p50_ms"]
                                                     / calls["bare_ping"]["p50_ms"], 2),
        f"pss_mib_{opts.servers}_servers": memory,
        "memory_ratio_swarm_over_bare": round(memory["swarm"] / memory["bare"], 2),
    }, indent=2))


if __name__ == "__main__":
    main()

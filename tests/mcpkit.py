"""An MCP client over stdio for tests: the SDK's own Client driving a real `swarm mcp` subprocess, kept open on
a private event loop thread so that synchronous tests call tools one after another."""

import asyncio
import json
import subprocess
import sys
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.client.stdio import StdioServerParameters

from swarmd.home import SwarmHome
from swarmd.tokens import TOKEN_ENV

SWARM = str(Path(sys.executable).parent / "swarm")


class ToolError(AssertionError):
    """A tool call answered with an MCP tool error (its text is the message)."""


class McpSession:
    """`swarm mcp --home HOME` with `env` (over a minimal base environment), connected by the SDK's Client."""

    def __init__(self, home: SwarmHome, env: dict[str, str]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        params = StdioServerParameters(command=SWARM, args=["mcp", "--home", str(home.root)], env=env)
        self.client = Client(params, read_timeout_seconds=120)
        self.ready: Future[None] = Future()
        self.holder = asyncio.run_coroutine_threadsafe(self._hold(), self.loop)
        self.ready.result(timeout=180)

    async def _hold(self) -> None:
        """Enter and leave the client in one task (anyio's rule), serving calls from other tasks meanwhile."""
        self.closing = asyncio.Event()
        try:
            async with self.client:
                self.ready.set_result(None)
                await self.closing.wait()
        except BaseException as exc:
            if not self.ready.done():
                self.ready.set_exception(exc)
            raise

    def _run(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout=180)

    def tools(self) -> dict[str, Any]:
        return {t.name: t for t in self._run(self.client.list_tools()).tools}

    def call_text(self, name: str, args: dict[str, Any] | None = None) -> str:
        """The tool's text answer; ToolError with the error text if the call was refused."""
        result = self._run(self.client.call_tool(name, args or {}))
        text = "".join(getattr(c, "text", "") for c in result.content)
        if result.is_error:
            raise ToolError(text)
        return text

    def call(self, name: str, args: dict[str, Any] | None = None) -> Any:
        return json.loads(self.call_text(name, args))

    def close(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self.closing.set)
            self.holder.result(timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


def coordinator_env(home: SwarmHome) -> dict[str, str]:
    """The environment `swarm mcp --print-config claude` gives a person's own agent session."""
    printed = subprocess.run([SWARM, "mcp", "--print-config", "claude", "--home", str(home.root)],
                             capture_output=True, text=True, check=True)
    return json.loads(printed.stdout)["mcpServers"]["swarm"]["env"]


def worker_env(home: SwarmHome, session: str, agent: str) -> dict[str, str]:
    """The environment the swarm gave worker `agent` at spawn, read from its processes (the pane's shell took
    the token from a one-shot file, so the processes it started hold it)."""
    shown = subprocess.run(["tmux", "-S", str(home.tmux_socket), "display-message", "-p", "-t", session,
                            "#{pane_pid}"], capture_output=True, text=True, check=True)
    pending = [shown.stdout.strip()]
    while pending:
        pid = pending.pop()
        environ = dict(item.split("=", 1) for item in
                       Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0") if "=" in item)
        if TOKEN_ENV in environ:
            return {"SWARM_HOME": str(home.root), "SWARM_AGENT": agent, TOKEN_ENV: environ[TOKEN_ENV]}
        pending += Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    raise AssertionError(f"no process of {agent} holds {TOKEN_ENV}")


def cli_json(*args: str, lines: bool = False) -> Any:
    """The `swarm ... --json` answer: one JSON document, or with `lines` a list of one JSON value a line."""
    done = subprocess.run([SWARM, *args, "--json"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    if lines:
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return json.loads(done.stdout)

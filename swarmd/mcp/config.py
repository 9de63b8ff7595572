"""What an agent CLI is given to start the swarm's MCP server: one `swarm` server over stdio, with the home,
the agent and its token in the server's environment.

Claude Code reads `{"mcpServers": {...}}` (`--mcp-config FILE`, with `--allowedTools mcp__swarm` so no dialog
asks to use it); Codex reads `[mcp_servers.swarm]` in its config.toml. The same entry serves a worker
(`worker_mcp_config`, written at spawn) and a person's own session (`swarm mcp --print-config`).
"""

import json
import sys
from pathlib import Path
from typing import Any

from swarmd.home import SwarmHome
from swarmd.tokens import TOKEN_ENV, issue_token

SERVER_NAME = "swarm"
CLAUDE_ALLOWED_TOOLS = f"mcp__{SERVER_NAME}"  # Claude Code's rule allowing every tool of the server


def server_entry(home: SwarmHome | Path, agent: str | None, token: str) -> dict[str, Any]:
    """One stdio server entry: this Python running `swarmd.mcp` (no CLI framework: it starts faster)."""
    env = {"SWARM_HOME": str(_home(home).root), TOKEN_ENV: token}
    if agent is not None:
        env["SWARM_AGENT"] = agent
    return {"type": "stdio", "command": sys.executable, "args": ["-m", "swarmd.mcp"], "env": env}


def _home(home: SwarmHome | Path) -> SwarmHome:
    return home if isinstance(home, SwarmHome) else SwarmHome(Path(home))


def worker_mcp_config(home: SwarmHome | Path, agent: str, token: str | None = None) -> dict[str, Any]:
    """Claude Code's MCP config for worker `agent`: `{"mcpServers": {"swarm": {...}}}`.

    `token` is the one the spawner put in the worker's environment (SWARM_AGENT_TOKEN); without it a fresh
    token is issued, which replaces the one on file (the environment's then no longer works). Write the
    result 0600 in the worker's own config directory: it holds the worker's token."""
    return {"mcpServers": {SERVER_NAME: server_entry(home, agent, token or issue_token(_home(home), agent))}}


def claude_args(config_file: Path) -> list[str]:
    """The `claude` arguments that load only this config and pre-approve its tools."""
    return ["--mcp-config", str(config_file), "--strict-mcp-config", "--allowedTools", CLAUDE_ALLOWED_TOOLS]


def codex_toml(entry: dict[str, Any]) -> str:
    """The `[mcp_servers.swarm]` table of Codex's config.toml for a server entry (strings as JSON strings,
    which TOML reads as basic strings)."""
    lines = [f"[mcp_servers.{SERVER_NAME}]", f"command = {json.dumps(entry['command'])}",
             f"args = [{', '.join(json.dumps(a) for a in entry['args'])}]", "",
             f"[mcp_servers.{SERVER_NAME}.env]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in entry["env"].items()]
    return "\n".join(lines) + "\n"


def coordinator_config(home: SwarmHome, kind: str) -> str:
    """What a person adds to their own agent to drive the swarm as its coordinator: JSON for `claude`
    (`claude mcp add-json swarm '<entry>'`, or a .mcp.json), TOML for `codex`. Issues a fresh coordinator
    token: a config printed earlier stops working."""
    entry = server_entry(home, None, issue_token(home, "coordinator"))
    if kind == "codex":
        return codex_toml(entry)
    return json.dumps({"mcpServers": {SERVER_NAME: entry}}, indent=2) + "\n"

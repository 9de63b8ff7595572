"""Codex (`codex`): its own CODEX_HOME per worker, the user's config.toml carried over with `notify` set to our
hook, the project trusted, and its usage read from its session (rollout) file.

Facts checked against codex 0.171.0 (tests/test_agents.py runs the real CLI against a scripted model):
- `CODEX_HOME` holds config.toml, auth.json and `sessions/YYYY/MM/DD/rollout-*-<thread id>.jsonl`.
- `notify = [argv...]` runs argv plus one JSON argument after each turn: {"type": "agent-turn-complete",
  "thread-id", "turn-id", "cwd", "last-assistant-message", ...}.
- `codex exec` never asks for approval; with `--sandbox workspace-write` it may write its cwd and the
  directories given with `--add-dir` (the swarm home, for the reporting commands' mail).
- Its model runs shell commands through the `exec` tool (JavaScript calling `tools.exec_command`), by default in
  a login shell (`bash -lc`) whose profile resets PATH, so the swarm's `agentmail` (beside swarmd's Python) is
  "command not found": `allow_login_shell = false` keeps the worker's PATH.
"""

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from swarmd.agents.base import Agent, WorkerSetup, write_context, write_private
from swarmd.home import SwarmHome
from swarmd.mcp.config import SERVER_NAME, codex_toml, server_entry
from swarmd.tokens import TOKEN_ENV, issue_token


class CodexAgent(Agent):
    name = "codex"

    def prepare(self, setup: WorkerSetup) -> dict[str, str]:
        """Write `<agent_dir>/codex/config.toml`: the user's own (from their CODEX_HOME or ~/.codex) with `notify`
        and the project's trust set; link their auth.json. Returns {"CODEX_HOME": that directory}."""
        codex_home = setup.agent_dir / "codex"
        write_context(setup, self.name)
        _add_to_context(setup, codex_home=str(codex_home))
        base = _user_codex_home(setup.env)
        text = (base / "config.toml").read_text() if base and (base / "config.toml").is_file() else ""
        try:
            user = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            user, text = {}, ""
        ours = []
        if "notify" not in user:
            ours.append(f"notify = {json.dumps(self.hook_argv(setup))}")
        if "allow_login_shell" not in user:  # a login shell's profile resets PATH: `agentmail` would be lost
            ours.append("allow_login_shell = false")
        projects = user.get("projects", {}) if isinstance(user.get("projects"), dict) else {}
        workdir = str(setup.workdir.absolute())
        trust = "" if workdir in projects else \
            f"\n[projects.{json.dumps(workdir)}]\ntrust_level = \"trusted\"\n"
        servers = user.get("mcp_servers", {}) if isinstance(user.get("mcp_servers"), dict) else {}
        mcp = "" if SERVER_NAME in servers else "\n" + codex_toml(
            server_entry(setup.home, setup.worker, setup.env.get(TOKEN_ENV) or issue_token(SwarmHome(setup.home),
                                                                                             setup.worker)))
        # Top-level keys go first: after a [table] header they would belong to that table.
        write_private(codex_home / "config.toml", "\n".join(ours) + "\n" + text + "\n" + trust + mcp)
        if base and (base / "auth.json").is_file():
            link = codex_home / "auth.json"
            link.unlink(missing_ok=True)
            link.symlink_to(base / "auth.json")
        return {"CODEX_HOME": str(codex_home)}


def _add_to_context(setup: WorkerSetup, **values: str) -> None:
    path = setup.agent_dir / "worker.json"
    write_private(path, json.dumps({**json.loads(path.read_text()), **values}, indent=1))


def _user_codex_home(env: dict[str, str]) -> Path | None:
    chosen = env.get("CODEX_HOME") or os.environ.get("CODEX_HOME")
    path = Path(chosen) if chosen else Path.home() / ".codex"
    return path if path.is_dir() else None


def state_of(payload: dict[str, Any]) -> tuple[str, str] | None:
    """Codex's notify says a turn is complete: the agent is idle."""
    if payload.get("type") == "agent-turn-complete":
        return "idle", ""
    return None


def permission(payload: dict[str, Any], context: dict[str, Any]) -> None:
    """Codex asks nothing through this hook (`exec` never asks; the sandbox is the policy)."""
    return None


def rollout(codex_home: Path, thread: str) -> Path | None:
    """The session file of thread `thread` under `codex_home/sessions`, if any."""
    if not thread or not (codex_home / "sessions").is_dir():
        return None
    return next(iter(sorted((codex_home / "sessions").rglob(f"rollout-*{thread}.jsonl"))), None)


def usage(record: str | None) -> dict[str, float]:
    """The thread's total token usage from the last `token_count` event of its rollout file; {} without one."""
    if not record:
        return {}
    total: dict[str, Any] | None = None
    try:
        with open(record, encoding="utf-8", errors="replace") as f:
            for line in f:
                if '"token_count"' not in line:
                    continue
                try:
                    info = (json.loads(line).get("payload") or {}).get("info") or {}
                except ValueError:
                    continue
                total = info.get("total_token_usage") or total
    except OSError:
        return {}
    if not total:
        return {}
    return {"input_tokens": int(total.get("input_tokens", 0)), "output_tokens": int(total.get("output_tokens", 0)),
            "cache_read_input_tokens": int(total.get("cached_input_tokens", 0))}

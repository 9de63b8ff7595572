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
- Its lifecycle hooks (`hooks.json` beside config.toml; feature `hooks`, on by default) run only once trusted:
  an untrusted hook is skipped, and the TUI opens with a "Hooks need review" dialog. Trust is
  `[hooks.state."<hooks.json path>:<event, snake case>:<group>:<handler>"] trusted_hash = "sha256:..."` in
  config.toml, the hash being sha256 of the hook's normalized identity as compact JSON with sorted keys
  (`trust_hash`); the TUI's own "Trust all" writes exactly these values. Hook payloads come on stdin and are
  Claude Code's: `hook_event_name`, `session_id`, `transcript_path` (the rollout file), `tool_name` ("Bash"),
  `source`; SessionStart fires with the first turn, not at launch.
- The TUI starts a shared app-server daemon (under `$CODEX_HOME/packages/app-server-daemon/`) that outlives it,
  reparented to init, unless `features.daemon_auto_start = false` or `--no-daemon`.
- The TUI's composer (`› `) takes a bracketed paste (`paste-buffer -p`) as one text, shown as its lines or, when
  long, as "[Pasted Content N chars]"; a separate Enter submits it as one turn, also while its MCP servers still
  start ("Waiting for startup", the turn then begins). It titles each task in a side thread whose end fires
  `notify` (not the hooks): `from_main_thread` tells them apart.
- The TUI's shell tool is the `exec_command` function (no `exec` wrapper), with `-a never -s workspace-write`
  commands run in the sandbox without a dialog; `--add-dir` makes the swarm home writable for the mail.
"""

import hashlib
import json
import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

from swarmd.agents.base import Agent, WorkerSetup, last_session, write_context, write_private
from swarmd.errors import ConfigError
from swarmd.home import SwarmHome
from swarmd.mcp.config import SERVER_NAME, codex_toml, server_entry
from swarmd.tokens import TOKEN_ENV, issue_token

# The lifecycle events the worker's hooks report (codex 0.171.0 names them as Claude Code does).
HOOK_EVENTS = ("SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse", "PermissionRequest", "Stop",
               "SessionEnd")
TOOL_EVENTS = frozenset({"PreToolUse", "PostToolUse", "PermissionRequest"})
HOOK_TIMEOUT = 30  # seconds codex gives one hook run
SESSION_END_TIMEOUT = 3  # codex's ceiling for a SessionEnd hook (it clamps a longer one, changing its trust hash)
DEFAULT_HOOK_TIMEOUT = 600  # what codex puts in a hook's identity when the hook names none


class CodexAgent(Agent):
    name = "codex"

    def prepare(self, setup: WorkerSetup) -> dict[str, str]:
        """Write `<agent_dir>/codex/config.toml`: the user's own (from their CODEX_HOME or ~/.codex) with `notify`
        and the project's trust set; link their auth.json. Returns {"CODEX_HOME": that directory}."""
        codex_home = (setup.agent_dir / "codex").resolve()  # codex keys hook trust by the real path
        write_context(setup, self.name)
        _add_to_context(setup, codex_home=str(codex_home))
        base = _user_codex_home(setup.env)
        text = (base / "config.toml").read_text() if base and (base / "config.toml").is_file() else ""
        try:
            user = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            user, text = {}, ""
        ours = []
        if "notify" not in user:  # the fallback when hooks do not run: a turn's end
            ours.append(f"notify = {json.dumps(self.hook_argv(setup))}")
        if "allow_login_shell" not in user:  # a login shell's profile resets PATH: `agentmail` would be lost
            ours.append("allow_login_shell = false")
        if "check_for_update_on_startup" not in user:  # no update screen in an unattended pane
            ours.append("check_for_update_on_startup = false")
        text = _with_feature(text, user, "daemon_auto_start", False)  # no daemon left behind by the worker
        projects = user.get("projects", {}) if isinstance(user.get("projects"), dict) else {}
        workdir = str(setup.workdir.absolute())
        trust = "" if workdir in projects else \
            f"\n[projects.{json.dumps(workdir)}]\ntrust_level = \"trusted\"\n"
        servers = user.get("mcp_servers", {}) if isinstance(user.get("mcp_servers"), dict) else {}
        mcp = "" if SERVER_NAME in servers else "\n" + codex_toml(
            server_entry(setup.home, setup.worker, setup.env.get(TOKEN_ENV) or issue_token(SwarmHome(setup.home),
                                                                                             setup.worker)))
        hooks = self.hooks(setup)
        write_private(codex_home / "hooks.json", json.dumps({"hooks": hooks}, indent=1))
        # Top-level keys go first: after a [table] header they would belong to that table.
        config = "\n".join(ours) + "\n" + text + "\n" + trust + mcp + "\n" + trusted(codex_home / "hooks.json", hooks)
        try:
            tomllib.loads(config)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"cannot add the worker's settings to the codex config.toml of {base}: {exc} "
                              "(a `features` or `hooks` written inline?)") from None
        write_private(codex_home / "config.toml", config)
        if base and (base / "auth.json").is_file():
            link = codex_home / "auth.json"
            link.unlink(missing_ok=True)
            link.symlink_to(base / "auth.json")
        return {"CODEX_HOME": str(codex_home)}


    def hooks(self, setup: WorkerSetup) -> dict[str, list[dict[str, Any]]]:
        """The `hooks` of hooks.json: each event in HOOK_EVENTS runs our hook command (tool events for every
        tool)."""
        command = shlex.join(self.hook_argv(setup))
        hooks = {}
        for event in HOOK_EVENTS:
            handler = {"type": "command", "command": command,
                       "timeout": SESSION_END_TIMEOUT if event == "SessionEnd" else HOOK_TIMEOUT}
            hooks[event] = [{"matcher": "*", "hooks": [handler]} if event in TOOL_EVENTS else {"hooks": [handler]}]
        return hooks


def trust_hash(event: str, group: dict[str, Any]) -> str:
    """The hash codex (0.171.0) trusts one hook by: sha256 over the compact, key-sorted JSON of its identity
    (the event in snake case, the group's matcher if any, the one handler with its timeout and `async`
    filled in), as `sha256:<hex>`. Source: codex-rs hooks discovery (`command_hook_hash`) and config
    fingerprint (`version_for_toml`); checked against the values the TUI's "Trust all" writes."""
    handler = {"timeout": DEFAULT_HOOK_TIMEOUT, "async": False, **group["hooks"][0]}
    identity: dict[str, Any] = {"event_name": _snake(event), "hooks": [handler]}
    if group.get("matcher") is not None:
        identity["matcher"] = group["matcher"]
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def trusted(hooks_file: Path, hooks: dict[str, list[dict[str, Any]]]) -> str:
    """config.toml tables that trust each hook of `hooks` (as written to `hooks_file`): no review dialog, and
    the hooks run."""
    tables = []
    for event, groups in hooks.items():
        for index, group in enumerate(groups):
            key = f"{hooks_file}:{_snake(event)}:{index}:0"
            tables.append(f"[hooks.state.{json.dumps(key)}]\ntrusted_hash = {json.dumps(trust_hash(event, group))}\n")
    return "\n".join(tables)


def _snake(event: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", event).lower()


def _with_feature(text: str, user: dict[str, Any], name: str, value: bool) -> str:
    """The user's config text with `features.<name>` set to `value` unless they set it: added under their
    `[features]` header, or as a new `[features]` table at the end. A `features` written inline or as dotted
    keys is left alone (then the profile's flags must do it)."""
    features = user.get("features")
    setting = f"{name} = {json.dumps(value)}"
    if features is None:
        return f"{text}\n[features]\n{setting}\n"
    if not isinstance(features, dict) or name in features:
        return text
    header = re.search(r"^[ \t]*\[[ \t]*features[ \t]*\][ \t]*(#.*)?$", text, re.MULTILINE)
    if header is None:
        return text
    return text[:header.end()] + "\n" + setting + text[header.end():]


def _add_to_context(setup: WorkerSetup, **values: str) -> None:
    path = setup.agent_dir / "worker.json"
    write_private(path, json.dumps({**json.loads(path.read_text()), **values}, indent=1))


def _user_codex_home(env: dict[str, str]) -> Path | None:
    chosen = env.get("CODEX_HOME") or os.environ.get("CODEX_HOME")
    path = Path(chosen) if chosen else Path.home() / ".codex"
    return path if path.is_dir() else None


def from_main_thread(payload: dict[str, Any], agent_dir: Path) -> bool:
    """Whether a payload is about the agent's own conversation. Codex's `notify` also fires for its side threads
    (the 0.171.0 TUI titles each task in a thread of its own, which ends while the agent still works): once the
    hooks have named the session, a notify of another thread is not the agent's."""
    thread = payload.get("thread-id")
    if payload.get("type") != "agent-turn-complete" or not thread:
        return True
    known = last_session(agent_dir)
    return known is None or thread == known


def state_of(payload: dict[str, Any]) -> tuple[str, str] | None:
    """The agent's state (one of base.STATES) and its detail for one hook payload (its `hook_event_name`) or
    `notify` payload (`type` "agent-turn-complete": idle); None for one that says nothing new."""
    if payload.get("type") == "agent-turn-complete":
        return "idle", ""
    event = payload.get("hook_event_name")
    if event == "SessionStart":
        return "starting", str(payload.get("source", ""))
    if event in ("UserPromptSubmit", "PreToolUse", "PostToolUse"):
        return "working", ""
    if event == "PermissionRequest":
        command = (payload.get("tool_input") or {}).get("command", "") if isinstance(payload.get("tool_input"), dict) \
            else ""
        return "needs_input", f"permission for {payload.get('tool_name', '?')}: {str(command)[:300]}"
    if event == "Stop":
        return "idle", ""
    if event == "SessionEnd":
        return "exited", str(payload.get("reason", ""))
    return None


def permission(payload: dict[str, Any], context: dict[str, Any]) -> None:
    """Codex asks nothing through this hook: its approval policy (`-a never`) and sandbox are the policy."""
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

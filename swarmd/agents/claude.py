"""Claude Code (`claude`): its own config directory per worker, settings written before launch, lifecycle hooks
that report the agent's state, and its usage read from the session transcript.

Facts checked against claude-code 2.1.332 (tests/test_agents.py runs the real CLI against a scripted model):
- `CLAUDE_CONFIG_DIR` moves everything: settings.json, `.claude.json` (onboarding, trust, API-key answers),
  `projects/<cwd>/<session>.jsonl` transcripts.
- An interactive start shows no dialog when `.claude.json` has `hasCompletedOnboarding`, the project's
  `hasTrustDialogAccepted`, and the last 20 characters of an `ANTHROPIC_API_KEY` from the environment in
  `customApiKeyResponses.approved`.
- Allow rules in settings.json (`Bash(agentmail send *)`) let a command run; a command holding a variable is
  refused by every rule ("A variable in this command can't be checked before it runs"), but not when a
  PreToolUse hook answers `permissionDecision: allow`: the policy (policy.py) is applied by our hook. A command
  that neither a rule nor the hook allows (`python3 -c ...` under `acceptEdits`) shows claude's own dialog in
  the TUI ("Do you want to proceed?", numbered options), reported by the PermissionRequest hook before it is
  drawn (tests/test_claude_dialogs.py).
- `"disableAllHooks": true` in the user's settings (carried over) silences every hook: then only the pane tells
  the state (tests/test_pause_recovery.py).
- Hook payloads (stdin JSON) carry `hook_event_name`, `session_id`, `transcript_path`; `StopFailure` carries
  `error` ("rate_limit" for a 429); `Notification` carries `message` and `notification_type`.
- The transcript holds each assistant message's final `usage` (one line per content block, same message id)
  and `cost-state` lines with `totalCostUSD`. The Stop hook may run before the turn's last assistant message is
  written there (anthropics/claude-code#15812): `answered` tells.
- `--resume OLD --fork-session --session-id NEW` goes on from session OLD's transcript (found under the
  config directory's `projects/`) as the new session NEW.
"""

import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

from swarmd.agents.base import Agent, WorkerSetup, write_context, write_private
from swarmd.agents.policy import allowed
from swarmd.mcp.config import CLAUDE_ALLOWED_TOOLS, worker_mcp_config
from swarmd.tokens import TOKEN_ENV

HOOK_EVENTS = ("SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse", "PermissionRequest", "Stop",
               "StopFailure", "Notification", "SessionEnd")
TOOL_EVENTS = frozenset({"PreToolUse", "PostToolUse", "PermissionRequest"})
# Claude Code's own rules for the reporting commands (the hook allows their forms with $SWARM_* variables too).
ALLOW_RULES = ("Bash(agentmail send *)", "Bash(agentmail read *)", "Bash(agentmail list *)")
USAGE_KEYS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")


class ClaudeAgent(Agent):
    name = "claude"

    def prepare(self, setup: WorkerSetup) -> dict[str, str]:
        """Write settings.json (hooks, allow rules) and .claude.json (no onboarding, trust or API-key dialog)
        into `<agent_dir>/claude`; returns {"CLAUDE_CONFIG_DIR": that directory}."""
        write_context(setup, self.name)
        config_dir = setup.agent_dir / "claude"
        base = _user_config_dir(setup.env)
        settings = _read_json(base / "settings.json") if base else {}
        permissions = settings.setdefault("permissions", {})
        permissions["allow"] = [*permissions.get("allow", []), *ALLOW_RULES, CLAUDE_ALLOWED_TOOLS,
                                *(f"Bash({rule.strip()} *)" for rule in setup.allow if rule.strip())]
        hook = {"type": "command", "command": shlex.join(self.hook_argv(setup)), "timeout": 30}
        settings["hooks"] = {**settings.get("hooks", {}), **{
            event: [{"matcher": "*", "hooks": [hook]} if event in TOOL_EVENTS else {"hooks": [hook]}]
            for event in HOOK_EVENTS}}
        write_private(config_dir / "settings.json", json.dumps(settings, indent=1))
        state: dict[str, Any] = {
            "hasCompletedOnboarding": True, "numStartups": 1,
            "projects": {str(setup.workdir.absolute()): {"hasTrustDialogAccepted": True,
                                                         "hasCompletedProjectOnboarding": True}}}
        # The swarm's MCP server, user-scoped in this config dir: its tools are allowed above (no dialog).
        state["mcpServers"] = worker_mcp_config(setup.home, setup.worker, setup.env.get(TOKEN_ENV))["mcpServers"]
        key = setup.env.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_API_KEY")
        if key:
            state["customApiKeyResponses"] = {"approved": [key[-20:]], "rejected": []}
        write_private(config_dir / ".claude.json", json.dumps(state, indent=1))
        if setup.resume is not None:
            carry_transcript(setup.resume[0] / "claude", config_dir, setup.resume[1], setup.workdir)
        if base and (base / ".credentials.json").is_file():  # a logged-in user's workers stay logged in
            link = config_dir / ".credentials.json"
            link.unlink(missing_ok=True)
            link.symlink_to(base / ".credentials.json")
        return {"CLAUDE_CONFIG_DIR": str(config_dir)}


def session_args(session_id: str, resume: str | None) -> list[str]:
    """Claude Code's arguments for a worker's session: a fresh `--session-id`, or the predecessor's session
    resumed and forked into the fresh id (claude-code 2.1.332 accepts `--session-id` with `--fork-session`)."""
    fresh = ["--session-id", session_id]
    return ["--resume", resume, "--fork-session", *fresh] if resume else fresh


def carry_transcript(old_config: Path, new_config: Path, session: str, workdir: Path) -> bool:
    """Copy session `session`'s transcript (`projects/<cwd>/<session>.jsonl`) from one worker's config directory
    into the next one's, under the next one's working directory (its own worktree, perhaps), where `--resume`
    looks for it; False when there is none. Claude Code names a project's directory after its path, every
    character but a letter or digit made `-`."""
    found = sorted((old_config / "projects").glob(f"*/{session}.jsonl")) if (old_config / "projects").is_dir() else []
    for transcript in found[:1]:
        project = re.sub(r"[^A-Za-z0-9]", "-", str(workdir.absolute()))
        target = new_config / "projects" / project / transcript.name
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(target, transcript.read_text(encoding="utf-8", errors="replace"))
    return bool(found)


def _user_config_dir(env: dict[str, str]) -> Path | None:
    """The config directory the user's own claude would read (the profile's or our CLAUDE_CONFIG_DIR, else
    ~/.claude), read only to carry its settings and login over."""
    chosen = env.get("CLAUDE_CONFIG_DIR") or os.environ.get("CLAUDE_CONFIG_DIR")
    path = Path(chosen) if chosen else Path.home() / ".claude"
    return path if path.is_dir() else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def state_of(payload: dict[str, Any]) -> tuple[str, str] | None:
    """The agent's state (one of base.STATES) and its detail for one hook payload; None for an event that says
    nothing new (a Notification of another kind)."""
    event = payload.get("hook_event_name")
    if event == "SessionStart":
        return "starting", str(payload.get("source", ""))
    if event in ("UserPromptSubmit", "PreToolUse", "PostToolUse"):
        return "working", ""
    if event == "Stop":
        return "idle", ""
    if event == "StopFailure":
        if payload.get("error") == "rate_limit":
            return "rate_limited", str(payload.get("last_assistant_message", ""))
        return "idle", f"the turn failed: {payload.get('error', '')}"
    if event == "PermissionRequest":
        return "needs_input", f"permission for {payload.get('tool_name', '?')}: {_short(payload.get('tool_input'))}"
    if event == "Notification":
        kind = payload.get("notification_type", "")
        if kind in ("permission_prompt", "elicitation_dialog"):
            return "needs_input", str(payload.get("message", ""))
        if kind == "idle_prompt":
            return "idle", ""
        return None
    if event == "SessionEnd":
        return "exited", str(payload.get("reason", ""))
    return None


def permission(payload: dict[str, Any], context: dict[str, Any]) -> dict[str, Any] | None:
    """The hook's answer to a PreToolUse of Bash that the policy allows (None: Claude Code decides as usual)."""
    if payload.get("hook_event_name") != "PreToolUse" or payload.get("tool_name") != "Bash":
        return None
    command = str((payload.get("tool_input") or {}).get("command", ""))
    prefixes = tuple(tuple(p) for p in context.get("prefixes", []))
    if not allowed(command, prefixes=prefixes, exact=tuple(context.get("exact", []))):
        return None
    return {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "allow",
                                   "permissionDecisionReason": "swarm policy: a reporting command or a task check"}}


def usage(transcript: str | os.PathLike[str] | None) -> dict[str, float]:
    """Tokens summed over the session's assistant messages (each message once, by id) and the session's cost in
    USD when Claude Code has recorded it; {} without a readable transcript."""
    if not transcript:
        return {}
    by_message: dict[str, dict[str, Any]] = {}
    cost: float | None = None
    try:
        with open(transcript, encoding="utf-8", errors="replace") as f:
            for line in f:
                if '"usage"' not in line and '"cost-state"' not in line:
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line being written
                if entry.get("type") == "cost-state" and isinstance(entry.get("totalCostUSD"), (int, float)):
                    cost = float(entry["totalCostUSD"])
                message = entry.get("message") if entry.get("type") == "assistant" else None
                if isinstance(message, dict) and isinstance(message.get("usage"), dict) \
                        and not entry.get("isApiErrorMessage"):
                    by_message[str(message.get("id") or len(by_message))] = message["usage"]
    except OSError:
        return {}
    totals: dict[str, float] = {key: 0 for key in USAGE_KEYS}
    for counts in by_message.values():
        for key in USAGE_KEYS:
            value = counts.get(key)
            totals[key] += value if isinstance(value, int) else 0
    if cost is not None:
        totals["cost_usd"] = cost
    return totals


def answered(transcript: str | os.PathLike[str] | None, since: int) -> bool:
    """Whether the turn whose prompt came at byte `since` of the transcript (its size then) has its answer
    written there: an assistant message after that byte, and no message of the user's (a tool's result) after
    the last one. True without a readable transcript (nothing to wait for)."""
    try:
        found = _messages(transcript, since if since <= os.path.getsize(transcript or "") else 0)
    except OSError:
        return True
    return bool(found) and found[-1][0] == "assistant"


def _messages(transcript: str | os.PathLike[str] | None, start: int) -> list[tuple[str, int]]:
    """("user" or "assistant", the byte offset just past its line) for each message entry from byte `start` on;
    a line still being written is left out. OSError when the transcript cannot be read."""
    found = []
    with open(transcript or "", "rb") as f:
        f.seek(start)
        offset = start
        for line in f:
            offset += len(line)
            if b'"type":"user"' not in line and b'"type":"assistant"' not in line:
                continue  # (Claude Code writes compact JSON; most lines are neither)
            try:
                kind = json.loads(line).get("type")
            except (ValueError, AttributeError):
                continue
            if kind in ("user", "assistant") and line.endswith(b"\n"):
                found.append((kind, offset))
    return found


def _short(value: Any, limit: int = 300) -> str:
    text = value.get("command", "") if isinstance(value, dict) and "command" in value else json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."

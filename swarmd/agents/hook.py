"""`python -m swarmd.agents.hook CLI AGENT_DIR [PAYLOAD]`: what a worker's agent runs on each lifecycle event.

Claude Code gives the event as JSON on stdin (its hooks); Codex gives it as the last argument (its `notify`).
The hook answers a PreToolUse the policy allows, and posts the agent's state to the supervisor as AGENT_STATE
mail when it changed (the last one sent is kept in `AGENT_DIR/state`). It runs on every tool call, so it
imports the mail layer only when it has something to send, and it never fails the agent: an error goes to
`AGENT_DIR/hook-errors.log` and the hook exits 0.
"""

import signal

# An agent that exits right after its last turn ends the hooks it started (Claude Code's StopFailure and Codex's
# `notify` are not waited for; the pane's SIGHUP or the agent's SIGTERM would end one mid-send): a report must
# still get out. The hook is short-lived and bounded by the agent's hook timeout.
for _signal in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
    signal.signal(_signal, signal.SIG_IGN)

import fcntl  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from swarmd.agents.base import CONTEXT_FILE  # noqa: E402

# Events whose hook Claude Code (2.1.332) cuts short ("Hook cancelled" as `claude -p` exits): reported from a
# child process of our own, detached, so that the agent's end still reaches the supervisor.
DETACHED = frozenset({"SessionEnd", "StopFailure"})


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print("usage: python -m swarmd.agents.hook CLI AGENT_DIR [PAYLOAD]", file=sys.stderr)
        return 2
    cli, agent_dir = args[0], Path(args[1])
    try:
        raw = args[2] if len(args) > 2 else sys.stdin.read()
        payload = json.loads(raw or "{}")
        if isinstance(payload, dict) and payload.get("hook_event_name") in DETACHED and _forked_off():
            return 0
        context = json.loads((agent_dir / CONTEXT_FILE).read_text())
        answer = handle(cli, payload if isinstance(payload, dict) else {}, context, agent_dir)
        if answer is not None:
            print(json.dumps(answer))
    except Exception:  # noqa: BLE001 - a hook must never stop the agent it observes
        with open(agent_dir / "hook-errors.log", "a") as log:
            log.write(traceback.format_exc())
    return 0


def _forked_off() -> bool:
    """In the parent: True at once (the agent goes on); the child, in a session of its own, makes the report."""
    if os.fork() != 0:
        return True
    os.setsid()
    return False


def handle(cli: str, payload: dict[str, Any], context: dict[str, Any], agent_dir: Path) -> dict[str, Any] | None:
    """Report the state `payload` shows, and return the hook's answer to the CLI (None: no answer)."""
    if cli == "claude":
        from swarmd.agents import claude as adapter
    else:
        from swarmd.agents import codex as adapter  # type: ignore[no-redef]
    found = adapter.state_of(payload) if cli == "claude" or adapter.from_main_thread(payload, agent_dir) else None
    if found is not None:
        state, detail = found
        report: dict[str, Any] = {"state": state, "detail": detail[:2000]}
        if state in ("idle", "exited", "rate_limited"):
            report["usage"] = adapter.usage(_record(cli, payload, context))
        session = payload.get("session_id") or payload.get("thread-id")
        if session:
            report["session_id"] = str(session)
        post_if_changed(agent_dir, context, report)
    return adapter.permission(payload, context)


def _record(cli: str, payload: dict[str, Any], context: dict[str, Any]) -> str | None:
    """Where the agent's own usage records are: Claude's transcript, Codex's session (rollout) file (named in a
    hook's payload, found by thread id for `notify`)."""
    if cli == "claude" or payload.get("transcript_path"):
        return payload.get("transcript_path")
    from swarmd.agents.codex import rollout

    found = rollout(Path(context.get("codex_home", "")), str(payload.get("thread-id", "")))
    return str(found) if found else None


def post_if_changed(agent_dir: Path, context: dict[str, Any], report: dict[str, Any]) -> bool:
    """Send `report` as AGENT_STATE mail unless it equals the last one sent; True if sent. Serialized by a lock
    on the state file (an agent may run hooks in parallel)."""
    state_file = agent_dir / "state"
    with open(agent_dir / "state.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            last = json.loads(state_file.read_text())
        except (OSError, ValueError):
            last = None
        if last == report:
            return False
        from agentmail import PostOffice
        from protocol.messages import MessageType, make_message

        body = {"task": context["task"], **report}
        PostOffice(context["home"]).send(make_message(MessageType.AGENT_STATE, context["agent"], "supervisor", body,
                                                      thread=context["task"]))
        tmp = state_file.with_name("state.tmp")
        tmp.write_text(json.dumps(report))
        tmp.replace(state_file)
        return True


if __name__ == "__main__":
    sys.exit(main())

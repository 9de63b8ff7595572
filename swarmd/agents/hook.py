"""`python -m swarmd.agents.hook CLI AGENT_DIR [PAYLOAD]`: what a worker's agent runs on each lifecycle event.

Claude Code gives the event as JSON on stdin (its hooks); Codex gives it as the last argument (its `notify`).
The hook answers a PreToolUse the policy allows, and posts the agent's state to the supervisor as AGENT_STATE
mail when it changed (the last one sent is kept in `AGENT_DIR/state`; where the turn began in Claude's
transcript, in `AGENT_DIR/turn`, so that a Stop whose answer is not written yet has its usage reported once it
is). It runs on every tool call, so it imports the mail layer only when it has something to send, and it never
fails the agent: an error goes to `AGENT_DIR/hook-errors.log` and the hook exits 0.
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
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from swarmd.agents.base import CONTEXT_FILE, write_private  # noqa: E402

# Events whose hook Claude Code (2.1.332) cuts short ("Hook cancelled" as `claude -p` exits): reported from a
# child process of our own, detached, so that the agent's end still reaches the supervisor.
DETACHED = frozenset({"SessionEnd", "StopFailure"})
# Seconds a Stop's usage waits for the turn's answer to be written into the transcript, and how often it looks.
LATE_USAGE_WAIT = 30.0
LATE_USAGE_POLL = 0.05


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
    """In the parent: True at once (the agent goes on); the child, in a session of its own and off the hook's
    pipes (the agent may wait for them to close), makes the report."""
    if os.fork() != 0:
        return True
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
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
        event, transcript = payload.get("hook_event_name"), payload.get("transcript_path")
        # (asked before the usage is read: an answer written in between is in the usage then, or waited for)
        pending = _unanswered(agent_dir, transcript) if cli == "claude" and event == "Stop" else None
        report: dict[str, Any] = {"state": state, "detail": detail[:2000]}
        if state in ("idle", "exited", "rate_limited"):
            report["usage"] = adapter.usage(_record(cli, payload, context))
        session = payload.get("session_id") or payload.get("thread-id")
        if session:
            report["session_id"] = str(session)
        if cli == "claude" and event == "UserPromptSubmit":
            _mark_turn(agent_dir, transcript)
        post_if_changed(agent_dir, context, report)
        if pending is not None and not _forked_off():
            _late_usage(agent_dir, context, report, transcript, pending)
    return adapter.permission(payload, context)


def _mark_turn(agent_dir: Path, transcript: str | None) -> None:
    """Keep where a turn begins (`AGENT_DIR/turn`: the transcript and its size in bytes as the prompt comes):
    what follows that byte is the turn's, whenever Claude Code writes it."""
    try:
        size = os.path.getsize(transcript or "")
    except OSError:
        size = 0
    write_private(agent_dir / "turn", json.dumps({"transcript": transcript, "offset": size}))


def _turn_start(agent_dir: Path, transcript: str | None) -> int:
    """The byte of `transcript` at which the last turn began (0 if unknown, or if it was another transcript's)."""
    try:
        turn = json.loads((agent_dir / "turn").read_text())
        return int(turn["offset"]) if turn["transcript"] == transcript else 0
    except (OSError, ValueError, TypeError, KeyError):
        return 0


def _unanswered(agent_dir: Path, transcript: str | None) -> int | None:
    """The byte of Claude's `transcript` at which the last turn began if its answer is not written there yet;
    None when it is."""
    from swarmd.agents import claude

    since = _turn_start(agent_dir, transcript)
    return None if claude.answered(transcript, since) else since


def _late_usage(agent_dir: Path, context: dict[str, Any], report: dict[str, Any], transcript: str | None,
                since: int) -> None:
    """In a child of our own, forked off at a Stop whose turn (begun at byte `since` of the transcript) has its
    answer not in the transcript yet (Claude Code may run its Stop hook before it writes the answer, and the
    answer's usage: anthropics/claude-code#15812): wait for the answer (LATE_USAGE_WAIT seconds at most, and no
    longer than `report` stays the last one sent), report the state again with the usage unless a newer report
    has been sent meanwhile, and exit."""
    from swarmd.agents import claude

    try:
        deadline = time.monotonic() + LATE_USAGE_WAIT
        while not claude.answered(transcript, since) and _last_report(agent_dir) == report \
                and time.monotonic() < deadline:
            time.sleep(LATE_USAGE_POLL)
        post_if_changed(agent_dir, context, {**report, "usage": claude.usage(transcript)}, after=report)
    except Exception:  # noqa: BLE001 - as in main: a report that cannot be made is logged
        with open(agent_dir / "hook-errors.log", "a") as log:
            log.write(traceback.format_exc())
    os._exit(0)


def _record(cli: str, payload: dict[str, Any], context: dict[str, Any]) -> str | None:
    """Where the agent's own usage records are: Claude's transcript, Codex's session (rollout) file (named in a
    hook's payload, found by thread id for `notify`)."""
    if cli == "claude" or payload.get("transcript_path"):
        return payload.get("transcript_path")
    from swarmd.agents.codex import rollout

    found = rollout(Path(context.get("codex_home", "")), str(payload.get("thread-id", "")))
    return str(found) if found else None


def post_if_changed(agent_dir: Path, context: dict[str, Any], report: dict[str, Any],
                    after: dict[str, Any] | None = None) -> bool:
    """Send `report` as AGENT_STATE mail unless it equals the last one sent (or, given `after`, unless the last
    one sent is not `after`: a late report never overtakes a newer one); True if sent. Serialized by a lock on
    the state file (an agent may run hooks in parallel)."""
    with open(agent_dir / "state.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        last = _last_report(agent_dir)
        if last == report or (after is not None and last != after):
            return False
        from agentmail import PostOffice
        from protocol.messages import MessageType, make_message

        body = {"task": context["task"], **report}
        PostOffice(context["home"]).send(make_message(MessageType.AGENT_STATE, context["agent"], "supervisor", body,
                                                      thread=context["task"]))
        write_private(agent_dir / "state", json.dumps(report))
        return True


def _last_report(agent_dir: Path) -> Any:
    """The last report sent (`AGENT_DIR/state`, replaced whole), None if none could be read."""
    try:
        return json.loads((agent_dir / "state").read_text())
    except (OSError, ValueError):
        return None


if __name__ == "__main__":
    sys.exit(main())

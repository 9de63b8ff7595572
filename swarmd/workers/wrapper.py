"""Make any command a well-behaved worker: `python -m swarmd.worker [--script | [--prompt-stdin FILE] -- CMD ...]`.

It sends ACCEPTED, heartbeats while the command runs, and DONE (exit 0) or FAILED (exit code and the tail of
the output) when it ends. The command keeps the terminal, so interactive agents work; the tail is read from
the pane log the supervisor keeps (`$SWARM_LOG`). With `--prompt-stdin FILE` the command reads FILE (the
prompt) on its stdin instead: a task's text goes by file or stdin, never on a command line, where any local
user could read it and where more than 128 KiB cannot pass at all.

This module is what every worker pane starts, so it imports as little as it can: the standard library and
`swarmd.workers.fastpath`, which claims the TASK_ASSIGN the supervisor sent and writes the reports without
the models. The models (pydantic), the config and the ledger are loaded only when that path cannot serve:
a worker started by hand, a home without the settings in its environment, mail it cannot vouch for.
"""

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from agentmail.errors import MailError
from agentmail.locate import uses_files
from protocol.errors import ProtocolError
from protocol.ids import utcnow
from protocol.names import validate_agent_name, validate_task_id
from protocol.text import strip_escapes
from swarmd.errors import SwarmError
from swarmd.home import SwarmHome
from swarmd.ledger.heartbeats import touch_heartbeat
from swarmd.workers.fastpath import Assignment, Reports, take_assignment
from swarmd.workers.prompt import write_prompt

SUPERVISOR = "supervisor"
TAIL_BYTES = 2000
LOG_SETTLE_TIMEOUT = 5.0  # seconds to wait for tmux to copy the pane's last output into the log
LOG_SETTLE_POLL = 0.02  # seconds between looks at the log while waiting for it


class WorkerContext(NamedTuple):
    home: SwarmHome
    agent: str
    task: str
    attempt: int
    log: Path | None
    heartbeat_interval: float
    durable: bool

    @classmethod
    def from_env(cls, home: str | None, agent: str | None, task: str | None,
                 heartbeat_interval: float | None = None) -> "WorkerContext":
        agent = agent or os.environ.get("SWARM_AGENT")
        task = task or os.environ.get("SWARM_TASK")
        if not agent or not task:
            raise SwarmError("a worker needs an agent name and a task: pass --agent and --task "
                             "(the supervisor sets SWARM_AGENT and SWARM_TASK)")
        swarm_home = SwarmHome.at(home)
        interval, durable = settings_from_env() or _settings_from_config(swarm_home)
        log = os.environ.get("SWARM_LOG")
        return cls(home=swarm_home, agent=validate_agent_name(agent), task=validate_task_id(task),
                   attempt=int(os.environ.get("SWARM_ATTEMPT", "1")), log=Path(log) if log else None,
                   heartbeat_interval=heartbeat_interval or interval, durable=durable)


def settings_from_env() -> tuple[float, bool] | None:
    """(heartbeat_interval in seconds, durable) as the supervisor passed them (SWARM_HEARTBEAT_INTERVAL,
    SWARM_DURABLE "1"/"0"); None when either is missing or malformed (then swarm.toml is read)."""
    interval, durable = os.environ.get("SWARM_HEARTBEAT_INTERVAL"), os.environ.get("SWARM_DURABLE")
    try:
        seconds = float(interval or "")
    except ValueError:
        return None
    if not seconds > 0 or durable not in ("0", "1"):
        return None
    return seconds, durable == "1"


def _settings_from_config(home: SwarmHome) -> tuple[float, bool]:
    from swarmd.config import load_config  # the models: only for a worker started without the supervisor's env

    config = load_config(home.config_file)
    return config.heartbeat_interval, config.durable


def clean_tail(text: str, limit: int = TAIL_BYTES) -> str:
    """The last `limit` characters of terminal output, without escape sequences or control characters."""
    return strip_escapes(text)[-limit:].strip()


def read_tail(path: Path | None, since: int, until: bytes | None = None) -> str:
    """The cleaned tail of the log at `path` from byte `since` on (at most 4 * TAIL_BYTES read), cut before the
    first occurrence of `until` if given; "" when there is no log."""
    data = _log_window(path, since)
    if until is not None and until in data:
        data = data[: data.index(until)]
    return clean_tail(data.decode("utf-8", "replace"))


def settled_tail(path: Path | None, since: int, marker: str, timeout: float = LOG_SETTLE_TIMEOUT) -> str:
    """The child's last output, once tmux has copied it into the log.

    tmux copies a pane's output into its log asynchronously, so right after the child exits its last lines
    (often the error that explains the failure) may not be there yet. The caller prints `marker` to the pane
    after the child has ended; once the marker is in the log, so is everything printed before it. Waits at
    most `timeout` seconds, then reads what is there.
    """
    if path is None:
        return ""
    needle = marker.encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and needle not in _log_window(path, since):
        time.sleep(LOG_SETTLE_POLL)
    return read_tail(path, since, until=needle)


def _log_window(path: Path | None, since: int) -> bytes:
    """The log's bytes from `since` on, at most its last 4 * TAIL_BYTES; b"" when there is no log (yet)."""
    if path is None:
        return b""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(since, size - 4 * TAIL_BYTES))
            return f.read()
    except FileNotFoundError:
        return b""


class Heartbeat(threading.Thread):
    """Touches the agent's heartbeat (a file's mtime, never an event) every `interval` seconds until stopped."""

    def __init__(self, home: SwarmHome, agent: str, interval: float) -> None:
        super().__init__(name=f"heartbeat-{agent}", daemon=True)
        self.directory, self.agent, self.interval = home.run_dir / "heartbeats", agent, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while True:
            touch_heartbeat(self.directory, self.agent, utcnow())
            if self.stopped.wait(self.interval):
                return


def assignment(ctx: WorkerContext) -> Assignment:
    """The TASK_ASSIGN the supervisor sent before starting us; for a worker started by hand, the ledger's task."""
    quick = take_assignment(ctx.home.mail_dir / ctx.agent, ctx.task) if uses_files(ctx.home.root) else None
    return quick if quick is not None else _assignment_with_models(ctx)


def _assignment_with_models(ctx: WorkerContext) -> Assignment:
    from agentmail import PostOffice
    from protocol.messages import MessageType

    post = PostOffice(ctx.home.root, durable=ctx.durable)
    mailbox = post.mailbox(ctx.agent) if ctx.agent in post.agents() else post.register(ctx.agent, role="worker")
    delivered = mailbox.wait(types={MessageType.TASK_ASSIGN}, task=ctx.task, timeout=0)
    if delivered is not None:
        return Assignment(delivered.message.body.title, delivered.message.body.description)
    from swarmd.ledger.log import Ledger  # a hand-started worker: read the board and register ourselves

    ledger = Ledger(ctx.home, durable=ctx.durable)
    task = ledger.task(ctx.task)
    if ctx.agent not in ledger.registry():
        from protocol.agent import AgentStatus, RegistryEntry

        ledger.register_agent(RegistryEntry(name=ctx.agent, role="worker", status=AgentStatus.BUSY,
                                            pid=os.getpid(), task=ctx.task), ctx.agent)
    return Assignment(task.title, task.description)


def run_worker(ctx: WorkerContext, argv: list[str] | None, prompt_stdin: Path | None = None) -> int:
    """Run `argv` (or, with None, the task's description as a shell script) as the worker of `ctx.task`.

    `prompt_stdin` is a file the command reads on its stdin (else it keeps the terminal's). Raises SwarmError
    when that file cannot be read, before anything is reported."""
    try:
        stdin = open(prompt_stdin, "rb") if prompt_stdin is not None else None
    except OSError as exc:
        raise SwarmError(f"cannot read the prompt {prompt_stdin}: {exc.strerror}") from None
    try:
        return _work(ctx, argv, stdin)
    finally:
        if stdin is not None:
            stdin.close()


def script_file(ctx: WorkerContext, script: str) -> Path:
    """The task's description written to a private file the shell runs (never `sh -c TEXT`: argv is public)."""
    path = ctx.home.prompts_dir / f"{ctx.agent}-script.sh"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_prompt(path, script)
    return path


def _work(ctx: WorkerContext, argv: list[str] | None, stdin: BinaryIO | None) -> int:
    assigned = assignment(ctx)
    reports = Reports(ctx.home.root, ctx.agent, ctx.task, durable=ctx.durable) if uses_files(ctx.home.root) else None

    def send(kind: str, **body: Any) -> bool:
        """The fast path's delivery where it can serve (files), else the models' (JetStream, odd text)."""
        return (reports is not None and reports.send(kind, **body)) or _send_with_models(ctx, kind, body)

    log_start = ctx.log.stat().st_size if ctx.log and ctx.log.exists() else 0
    send("ACCEPTED", title=assigned.title, started_at=pane_started() or utcnow())
    heartbeat = Heartbeat(ctx.home, ctx.agent, ctx.heartbeat_interval)
    heartbeat.start()
    command = argv if argv is not None else ["sh", str(script_file(ctx, assigned.description))]
    try:
        code, hung_up, launch_error = _run_child(command, stdin)
    finally:
        heartbeat.stopped.set()
    if hung_up:  # its terminal went away (session or tmux server killed): not the task's failure to report, and
        return 128 + signal.SIGHUP  # said as a hang-up whatever the command made of it (its exit file too)
    if code == 0:
        send("DONE", summary=f"`{' '.join(command)[:200]}` exited 0")
    else:
        marker = f"swarm worker: {ctx.agent} attempt {ctx.attempt} ended with exit code {code}"
        print(marker, flush=True)
        tail = settled_tail(ctx.log, log_start, marker)
        reason = "\n".join(filter(None, [f"exit code {code}", launch_error, tail]))
        failure = "LAUNCH_ERROR" if launch_error else "ERROR"
        send("FAILED", failure=failure, reason=reason, attempts=ctx.attempt)
    return code


def pane_started() -> datetime | None:
    """When the worker's pane process began, as the fork server's client passed it (SWARM_PANE_STARTED, ns since
    the epoch, taken out of the environment so that the agent does not inherit it); None without it, or for a
    value that is not a time up to now."""
    try:
        started = int(os.environ.pop("SWARM_PANE_STARTED", ""))
    except ValueError:
        return None
    if not 0 < started <= time.time_ns():
        return None
    return datetime.fromtimestamp(started / 1e9, UTC)


def _send_with_models(ctx: WorkerContext, kind: str, body: dict[str, Any]) -> bool:
    """Send a report through `PostOffice` when the fast path could not: it names what is wrong (an unknown
    recipient, text that is not UTF-8) with the error the models raise."""
    from agentmail import PostOffice
    from protocol.messages import make_message

    message = make_message(kind, ctx.agent, SUPERVISOR, {"task": ctx.task, **body}, thread=ctx.task)
    PostOffice(ctx.home.root, durable=ctx.durable).send(message)
    return True


def _run_child(argv: list[str], stdin: BinaryIO | None = None) -> tuple[int, bool, str | None]:
    """Run the command in the foreground (its stdin `stdin`, else ours); pass SIGTERM/SIGINT/SIGHUP on to it.
    Returns its exit code, whether the terminal hung up (SIGHUP) while it ran, and why it could not be started
    at all (None if it was)."""
    try:
        child = subprocess.Popen(argv, stdin=stdin)
    except OSError as exc:
        error = f"cannot start {argv[0]!r}: {exc.strerror or exc}"
        print(f"swarm worker: {error}", flush=True)
        return 127, False, error
    received: set[int] = set()

    def forward(signum: int, _frame: object) -> None:
        received.add(signum)
        child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return (code if code >= 0 else 128 - code), signal.SIGHUP in received, None


def parse_args(args: list[str] | None = None) -> argparse.Namespace:
    """The wrapper's options; `command` is the agent's argv (after `--`), empty with --script. Exits 2 on
    a usage error, as argparse does."""
    parser = argparse.ArgumentParser(prog="python -m swarmd.worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--home")
    parser.add_argument("--agent")
    parser.add_argument("--task")
    parser.add_argument("--script", action="store_true", help="run the task's description as a shell script")
    parser.add_argument("--prompt-stdin", type=Path, metavar="FILE", help="give the command FILE on its stdin")
    parser.add_argument("--heartbeat", type=float)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    opts = parser.parse_args(args)
    opts.command = opts.command[1:] if opts.command[:1] == ["--"] else opts.command
    return opts


def check_usage(script: bool, command: list[str], prompt_stdin: Path | None) -> None:
    """Raise SwarmError unless exactly one of --script and a command is given (--prompt-stdin needs a command)."""
    if script == bool(command):
        raise SwarmError("give a command after `--`, or --script to run the task's description")
    if script and prompt_stdin is not None:
        raise SwarmError("--prompt-stdin gives a command its prompt; a --script worker has none")


def main(args: list[str] | None = None) -> int:
    """The same as `swarm worker run`, without loading the CLI (a worker should start fast)."""
    opts = parse_args(args)
    try:
        check_usage(opts.script, opts.command, opts.prompt_stdin)
        ctx = WorkerContext.from_env(opts.home, opts.agent, opts.task, opts.heartbeat)
        return run_worker(ctx, None if opts.script else opts.command, opts.prompt_stdin)
    except (SwarmError, ProtocolError, MailError, OSError) as exc:
        print(f"swarm worker: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Make any command a well-behaved worker: `python -m swarmd.worker [--script | -- CMD ...]`.

It sends ACCEPTED, heartbeats while the command runs, and DONE (exit 0) or FAILED (exit code and the tail of
the output) when it ends. The command keeps the terminal, so interactive agents work; the tail is read from
the pane log the supervisor keeps (`$SWARM_LOG`).

This module is what every worker pane starts, so it imports as little as it can: no CLI framework, and the
ledger only for a worker started by hand. Its task comes from the TASK_ASSIGN mail the supervisor sent.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from agentmail import PostOffice
from agentmail.errors import MailError
from protocol.errors import ProtocolError
from protocol.ids import utcnow
from protocol.messages import FailureType, MessageType, TaskAssign, make_message
from protocol.names import validate_agent_name, validate_task_id
from swarmd.config import load_config
from swarmd.errors import SwarmError
from swarmd.home import SwarmHome
from swarmd.registry import touch_heartbeat

SUPERVISOR = "supervisor"
TAIL_BYTES = 2000
LOG_SETTLE_TIMEOUT = 5.0  # seconds to wait for tmux to copy the pane's last output into the log
LOG_SETTLE_POLL = 0.02  # seconds between looks at the log while waiting for it
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class WorkerContext:
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
        config = load_config(swarm_home.config_file)
        log = os.environ.get("SWARM_LOG")
        return cls(home=swarm_home, agent=validate_agent_name(agent), task=validate_task_id(task),
                   attempt=int(os.environ.get("SWARM_ATTEMPT", "1")), log=Path(log) if log else None,
                   heartbeat_interval=heartbeat_interval or config.heartbeat_interval, durable=config.durable)


def clean_tail(text: str, limit: int = TAIL_BYTES) -> str:
    """The last `limit` characters of terminal output, without escape sequences or control characters."""
    return _ANSI.sub("", text.replace("\r\n", "\n"))[-limit:].strip()


def read_tail(path: Path | None, since: int, until: bytes | None = None) -> str:
    """The cleaned tail of the log at `path` from byte `since` on (at most 4 * TAIL_BYTES read), cut before the
    first occurrence of `until` if given; "" when there is no log."""
    if path is None or not path.exists():
        return ""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(since, size - 4 * TAIL_BYTES))
        data = f.read()
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
    while time.monotonic() < deadline and not _contains(path, since, needle):
        time.sleep(LOG_SETTLE_POLL)
    return read_tail(path, since, until=needle)


def _contains(path: Path, since: int, needle: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(since, size - 4 * TAIL_BYTES - len(needle)))
            return needle in f.read()
    except FileNotFoundError:
        return False


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


def assignment(post: PostOffice, ctx: WorkerContext) -> TaskAssign:
    """The TASK_ASSIGN the supervisor sent before starting us; for a worker started by hand, the ledger's task."""
    mailbox = post.mailbox(ctx.agent) if ctx.agent in post.agents() else post.register(ctx.agent, role="worker")
    delivered = mailbox.wait(types={MessageType.TASK_ASSIGN}, task=ctx.task, timeout=0)
    if delivered is not None:
        return delivered.message.body
    from swarmd.ledger import Ledger  # a hand-started worker: read the board and register ourselves

    ledger = Ledger(ctx.home, durable=ctx.durable)
    task = ledger.task(ctx.task)
    if ctx.agent not in ledger.registry():
        from protocol.agent import AgentStatus, RegistryEntry

        ledger.register_agent(RegistryEntry(name=ctx.agent, role="worker", status=AgentStatus.BUSY,
                                            pid=os.getpid(), task=ctx.task), ctx.agent)
    return TaskAssign(task=task.id, title=task.title, description=task.description, attempt=ctx.attempt)


def run_worker(ctx: WorkerContext, argv: list[str] | None) -> int:
    """Run `argv` (or, with None, the task's description as a shell script) as the worker of `ctx.task`."""
    post = PostOffice(ctx.home.root, durable=ctx.durable)
    assigned = assignment(post, ctx)
    send = lambda kind, **body: post.send(  # noqa: E731
        make_message(kind, ctx.agent, SUPERVISOR, {"task": ctx.task, **body}, thread=ctx.task))
    log_start = ctx.log.stat().st_size if ctx.log and ctx.log.exists() else 0
    send(MessageType.ACCEPTED, title=assigned.title, started_at=utcnow())
    heartbeat = Heartbeat(ctx.home, ctx.agent, ctx.heartbeat_interval)
    heartbeat.start()
    command = argv if argv is not None else ["sh", "-c", assigned.description]
    try:
        code, hung_up, launch_error = _run_child(command)
    finally:
        heartbeat.stopped.set()
    if hung_up:
        return code  # its terminal went away (session or tmux server killed): not the task's failure to report
    if code == 0:
        send(MessageType.DONE, summary=f"`{' '.join(command)[:200]}` exited 0")
    else:
        marker = f"swarm worker: {ctx.agent} attempt {ctx.attempt} ended with exit code {code}"
        print(marker, flush=True)
        tail = settled_tail(ctx.log, log_start, marker)
        reason = "\n".join(filter(None, [f"exit code {code}", launch_error, tail]))
        failure = FailureType.LAUNCH_ERROR if launch_error else FailureType.ERROR
        send(MessageType.FAILED, failure=failure, reason=reason, attempts=ctx.attempt)
    return code


def _run_child(argv: list[str]) -> tuple[int, bool, str | None]:
    """Run the command in the foreground; pass SIGTERM/SIGINT/SIGHUP on to it. Returns its exit code, whether
    the terminal hung up (SIGHUP) while it ran, and why it could not be started at all (None if it was)."""
    try:
        child = subprocess.Popen(argv)
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


def main(args: list[str] | None = None) -> int:
    """The same as `swarm worker run`, without loading the CLI (a worker should start fast)."""
    parser = argparse.ArgumentParser(prog="python -m swarmd.worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--home")
    parser.add_argument("--agent")
    parser.add_argument("--task")
    parser.add_argument("--script", action="store_true", help="run the task's description as a shell script")
    parser.add_argument("--heartbeat", type=float)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    opts = parser.parse_args(args)
    command = opts.command[1:] if opts.command[:1] == ["--"] else opts.command
    try:
        if opts.script == bool(command):
            raise SwarmError("give a command after `--`, or --script to run the task's description")
        ctx = WorkerContext.from_env(opts.home, opts.agent, opts.task, opts.heartbeat)
        return run_worker(ctx, None if opts.script else command)
    except (SwarmError, ProtocolError, MailError, OSError) as exc:
        print(f"swarm worker: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

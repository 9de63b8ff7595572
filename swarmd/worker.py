"""`swarm worker run -- CMD`: make any command a well-behaved worker.

It sends ACCEPTED, heartbeats while the command runs, and DONE (exit 0) or FAILED (exit code and the tail of
the output) when it ends. The command keeps the terminal, so interactive agents work; the tail is read
from the pane log the supervisor keeps (`$SWARM_LOG`).
"""

import os
import re
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from agentmail import PostOffice
from protocol.agent import AgentStatus, RegistryEntry
from protocol.messages import FailureType, MessageType, make_message
from protocol.names import validate_agent_name, validate_task_id
from swarmd.errors import SwarmError
from swarmd.home import SwarmHome
from swarmd.ledger import Ledger

SUPERVISOR = "supervisor"
TAIL_BYTES = 2000
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class WorkerContext:
    home: SwarmHome
    agent: str
    task: str
    attempt: int
    log: Path | None
    heartbeat_interval: float

    @classmethod
    def from_env(cls, home: str | None, agent: str | None, task: str | None, heartbeat_interval: float) -> "WorkerContext":
        agent = agent or os.environ.get("SWARM_AGENT")
        task = task or os.environ.get("SWARM_TASK")
        if not agent or not task:
            raise SwarmError("a worker needs an agent name and a task: pass --agent and --task "
                             "(the supervisor sets SWARM_AGENT and SWARM_TASK)")
        log = os.environ.get("SWARM_LOG")
        return cls(home=SwarmHome.at(home), agent=validate_agent_name(agent), task=validate_task_id(task),
                   attempt=int(os.environ.get("SWARM_ATTEMPT", "1")), log=Path(log) if log else None,
                   heartbeat_interval=heartbeat_interval)


def clean_tail(text: str, limit: int = TAIL_BYTES) -> str:
    """The last `limit` characters of terminal output, without escape sequences or control characters."""
    return _ANSI.sub("", text.replace("\r\n", "\n"))[-limit:].strip()


def read_tail(path: Path | None, since: int) -> str:
    if path is None or not path.exists():
        return ""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(since, size - 4 * TAIL_BYTES))
        return clean_tail(f.read().decode("utf-8", "replace"))


class Heartbeat(threading.Thread):
    """Touches the agent's heartbeat every `interval` seconds until stopped."""

    def __init__(self, ledger: Ledger, agent: str, interval: float) -> None:
        super().__init__(name=f"heartbeat-{agent}", daemon=True)
        self.ledger, self.agent, self.interval = ledger, agent, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while True:
            self.ledger.heartbeat(self.agent)
            if self.stopped.wait(self.interval):
                return


def _send(post: PostOffice, ctx: WorkerContext, kind: MessageType, **body: object) -> None:
    post.send(make_message(kind, ctx.agent, SUPERVISOR, {"task": ctx.task, **body}, thread=ctx.task))


def _ensure_registered(ledger: Ledger, post: PostOffice, ctx: WorkerContext) -> None:
    """A worker the supervisor spawned is registered already; one started by hand registers itself."""
    if ctx.agent not in ledger.registry():
        entry = RegistryEntry(name=ctx.agent, role="worker", status=AgentStatus.BUSY, pid=os.getpid(), task=ctx.task)
        ledger.register_agent(entry, ctx.agent)
    post.register(ctx.agent, role="worker")


def run_worker(ctx: WorkerContext, argv: list[str]) -> int:
    """Run `argv` as the worker of `ctx.task`; return its exit code."""
    ledger = Ledger(ctx.home)
    post = PostOffice(ctx.home.root)
    _ensure_registered(ledger, post, ctx)
    log_start = ctx.log.stat().st_size if ctx.log and ctx.log.exists() else 0
    _send(post, ctx, MessageType.ACCEPTED, title=ledger.task(ctx.task).title)
    heartbeat = Heartbeat(ledger, ctx.agent, ctx.heartbeat_interval)
    heartbeat.start()
    try:
        code = _run_child(argv)
    finally:
        heartbeat.stopped.set()
    if code == 0:
        _send(post, ctx, MessageType.DONE, summary=f"`{' '.join(argv)[:200]}` exited 0")
    else:
        tail = read_tail(ctx.log, log_start)
        _send(post, ctx, MessageType.FAILED, failure=FailureType.ERROR, reason=f"exit code {code}\n{tail}".strip(),
              attempts=ctx.attempt)
    return code


def _run_child(argv: list[str]) -> int:
    """Run the command in the foreground; pass SIGTERM/SIGINT/SIGHUP on to it."""
    try:
        child = subprocess.Popen(argv)
    except OSError as exc:
        print(f"swarm worker: cannot start {argv[0]!r}: {exc.strerror}", flush=True)
        return 127
    forward = lambda signum, _frame: child.send_signal(signum)  # noqa: E731
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code if code >= 0 else 128 - code


def script_argv(ctx: WorkerContext) -> list[str]:
    """For script workers: the task's description is the shell script to run (an argument, never typed)."""
    return ["sh", "-c", Ledger(ctx.home).task(ctx.task).description]

"""How a swarm looks to a person: tables of the board and a live view of a running plan.

Text that came from outside (titles, summaries) may hold markup or terminal escapes: it always goes
through `safe()` before it reaches the terminal.
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from agentmail.clibase import quiet_broken_pipe
from protocol.event import Event, EventType
from protocol.task import Task, TaskStatus
from protocol.text import inert
from swarmd.entry import waiting_lines
from swarmd.ledger.board import in_wave_order

STATUS_STYLE = {
    TaskStatus.OPEN: "white", TaskStatus.ASSIGNED: "cyan", TaskStatus.IN_PROGRESS: "yellow",
    TaskStatus.VALIDATING: "magenta", TaskStatus.DONE: "green", TaskStatus.BLOCKED: "red",
    TaskStatus.CANCELLED: "dim",
}
STATUS_ORDER = list(TaskStatus)
# Bookkeeping that would crowd the tasks' own events out of a progress view (`swarm feed` still has them).
QUIET = frozenset({EventType.AGENT_REGISTERED, EventType.AGENT_UPDATED})
_TYPE_WIDTH = max(len(t.value) for t in EventType)


class QuietConsole(Console):
    """A rich Console for the CLI: a reader that goes away ends the command like any other write to it
    (exit 141, no message), where rich's own default exits 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        quiet_broken_pipe()


def terminal(stderr: bool = False) -> Console:
    """The console the `swarm` commands print to (stdout, or stderr when stdout carries JSON)."""
    return QuietConsole(stderr=stderr, highlight=False)


def safe(text: object, limit: int = 200) -> Text:
    """Plain text, one line, control characters shown as escapes (as everywhere in the CLIs); never markup."""
    cleaned = inert(str(text).replace("\n", " "))
    return Text(cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…")


def task_table(tasks: Iterable[Task], title: str | None = None) -> Table:
    table = Table(title=title, expand=False)
    for column in ("task", "status", "worker", "tries", "title"):
        table.add_column(column)
    for task in sorted(tasks, key=lambda t: (STATUS_ORDER.index(t.status), t.priority, t.id)):
        style = STATUS_STYLE.get(task.status, "")
        table.add_row(safe(task.id), Text(task.status, style=style), safe(task.assignee or ""),
                      str(len(task.attempts)), safe(task.title, 60))
    return table


def summary_table(tasks: Iterable[Task]) -> Table:
    """After a run: what was done, what failed, and why; in the order the tasks ran (wave, priority, id)."""
    table = Table(title="summary")
    for column in ("task", "status", "attempts", "last failure"):
        table.add_column(column)
    for task in in_wave_order(tasks):
        failures = [a.reason for a in task.attempts if a.outcome == "failed" and a.reason]
        table.add_row(safe(task.id), Text(task.status, style=STATUS_STYLE.get(task.status, "")),
                      str(len(task.attempts)), safe(failures[-1] if failures else "", 90))
    return table


def _queued(worker: Any) -> Text:
    """The prompts queued for a worker: how many, the oldest, and why they still wait (if known)."""
    if not worker.queued:
        return Text("-")
    shown = safe(f"{len(worker.queued)}: {worker.queued[0]}", 40)
    return shown.append_text(safe(f" ({worker.queue_note})", 120)) if worker.queue_note else shown


def status_view(report: dict[str, Any]) -> Group:
    """`Operator.status()` for people: the supervisor's line, a table of workers (with the prompts queued for an
    interactive one: how many, and the oldest), the tasks' counts, and each question a worker is waiting on an
    answer to."""
    sup = report["supervisor"]
    table = Table()
    for column in ("worker", "role", "task", "state", "agent", "pane", "heartbeat", "last message", "waiting on",
                   "queued"):
        table.add_column(column)
    for w in report["workers"]:
        until = f" until {w.paused_until[11:19]} UTC" if w.paused_until else ""  # the date is in --json
        agent = (w.agent_state or "-") + until + (f": {w.agent_detail}" if w.agent_detail else "")
        table.add_row(safe(w.name), safe(w.role), safe(w.task or ""), safe(w.state), safe(agent, 40), safe(w.pane),
                      _age(w.heartbeat_age), _age(w.last_message_age),
                      Text("-") if w.question is None else safe(w.question, 60),
                      _queued(w))
    waiting = [w.name for w in report["workers"] if w.question is not None]
    hint = [Text(f"waiting on an answer: {', '.join(waiting)} (answer with `swarm reply WORKER TEXT`, a dialog "
                 "with `swarm answer WORKER CHOICE`; "
                 "the whole question is in `swarm status --json`)")] if waiting else []
    running = f"running (pid {sup['pid']})" if sup["running"] else "not running"
    if report.get("dispatch", {}).get("paused"):
        running += "; dispatch paused (`swarm resume` lets it go on)"
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report["tasks"].items())) or "none"
    waits = [Text(line) for line in waiting_lines(report)]
    return Group(Text(f"supervisor: {running}"), table, Text(f"tasks: {counts}"), *waits, *hint)


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.0f}s ago"


def counts_line(tasks: Iterable[Task]) -> Text:
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task.status] = counts.get(task.status, 0) + 1
    line = Text()
    for status in STATUS_ORDER:
        if counts.get(status):
            line.append(f"{status} {counts[status]}  ", style=STATUS_STYLE[status])
    return line


def event_line(event: Event) -> Text:
    line = Text(f"{event.ts:%H:%M:%S} ", style="dim")
    line.append(f"{event.type:<{_TYPE_WIDTH}} ", style="bold")  # a space after each column, however long
    line.append(f"{event.agent:<11} ")
    line.append_text(safe(event.summary, 120))
    return line


class PlanView:
    """A live board for a terminal; a plain line per event elsewhere (logs, CI)."""

    def __init__(self, console: Console, ids: list[str], title: str = "swarm") -> None:
        self.console, self.ids, self.title = console, set(ids), title
        self.recent: list[Event] = []
        # transient: the final board and summary are printed after the run; the live frame makes way for them
        self.live = Live(console=console, refresh_per_second=8, transient=True) if console.is_terminal else None
        self.started = datetime.now()

    def __enter__(self) -> "PlanView":
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.live.__exit__(None, None, None)

    def update(self, event: Event, board: dict[str, Task]) -> None:
        if event.type in QUIET:
            return
        if self.live is None:
            self.console.print(event_line(event), soft_wrap=True)
            return
        self.recent = (self.recent + [event])[-8:]
        tasks = [t for t in board.values() if t.id in self.ids]
        elapsed = (datetime.now() - self.started).total_seconds()
        header = Text(f"{self.title}  {elapsed:5.1f}s  ", style="bold").append_text(counts_line(tasks))
        self.live.update(Group(header, task_table(tasks), *[event_line(e) for e in self.recent]))


def ratchet_table(tasks: Iterable[Task]) -> Table:
    """After a wave: each bead's OL ratchet (`ol hero ratchet`), passed, failed (with its stderr) or not run."""
    from swarmd.integrations.ol import recorded_ratchet, wave_bead

    table = Table(title="OL ratchet")
    for column in ("bead", "quest", "ratchet", "detail"):
        table.add_column(column)
    for task in tasks:
        bead, result = wave_bead(task), recorded_ratchet(task)
        if bead is None:
            continue
        if result is None:
            table.add_row(safe(bead), "", Text("not run", style="dim"), "")
            continue
        verdict = Text("complete", style="green") if result.passed else Text(
            f"failed ({result.how})", style="red")
        table.add_row(safe(bead), safe(result.quest), verdict, safe(result.stderr, 90))
    return table

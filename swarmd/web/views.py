"""What the dashboard's panels show, as JSON: the board, the registry, the workers waiting on a person, and
a worker's pane as plain text. Read through the same `Operator` the CLI uses; nothing here writes."""

from dataclasses import asdict
from typing import Any

from protocol.task import Task
from protocol.text import strip_escapes
from swarmd.ledger.board import in_wave_order
from swarmd.operate import Operator
from swarmd.supervisor.settings import dispatch_paused

PANE_LINES = 200


def state(operator: Operator) -> dict[str, Any]:
    """The board (tasks in wave order), the registry (agents, state, heartbeat age in seconds), questions
    waiting on an answer, and the supervisor: everything but the feed and the panes.

    Shape: {"seq", "paused", "supervisor", "tasks": [...], "agents": [...], "waiting": [...]}."""
    status = operator.status()
    workers = {w.name: w for w in status["workers"]}
    return {
        "seq": operator.ledger.last_seq(),
        "paused": dispatch_paused(operator.home),
        "supervisor": status["supervisor"],
        "tasks": [_task(t) for t in in_wave_order(operator.ledger.board().values())],
        "agents": [{"name": e.name, "role": e.role, "status": e.status.value, "task": e.task,
                    "agent_state": e.metadata.get("agent_state"),
                    "pane": workers[e.name].pane if e.name in workers else "gone",
                    "heartbeat_age": workers[e.name].heartbeat_age if e.name in workers else None}
                   for e in operator.ledger.registry().values()],
        "waiting": [asdict(w) for w in status["workers"] if w.question],
    }


def _task(task: Task) -> dict[str, Any]:
    return {"id": task.id, "title": task.title, "status": task.status.value, "assignee": task.assignee,
            "blocked_by": task.blocked_by, "priority": task.priority,
            "attempts": [{"number": a.number, "worker": a.worker, "outcome": a.outcome.value, "reason": a.reason}
                         for a in task.attempts],
            "notes": [{"kind": n.kind.value, "text": n.text, "author": n.author} for n in task.notes]}


def pane_text(operator: Operator, worker: str) -> str | None:
    """The worker's pane, its last PANE_LINES lines with terminal escapes stripped; None once its session
    is gone. Raises SwarmError for a worker the registry does not know."""
    session = operator.session(operator.entry(worker).name)
    if operator.tmux.pane(session) is None:
        return None
    return strip_escapes(operator.tmux.capture(session, PANE_LINES))

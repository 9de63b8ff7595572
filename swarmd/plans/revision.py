"""A plan run again after it was edited: which of its tasks differ from the board, and replacing the definitions
of those not yet done (`swarm run PLAN --replace`)."""

from dataclasses import dataclass, field

from protocol.task import Task, TaskStatus
from swarmd.ledger.log import Ledger
from swarmd.plans.plan import TASK_KEYS, Plan

# What a plan defines about a task (its id aside); the rest (status, attempts, notes) is the ledger's.
DEFINED_FIELDS = tuple(k for k in TASK_KEYS if k != "id")


@dataclass
class Revision:
    """`changed`: task id -> the fields whose plan value differs from the board's. After `replace`: `replaced`
    (ids whose definitions were replaced) and `kept_done` (changed ids left alone because they are done)."""

    changed: dict[str, list[str]]
    replaced: list[str] = field(default_factory=list)
    kept_done: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One line per changed task, saying what differs and what was (or can be) done about it."""
        out = []
        for task_id, fields in self.changed.items():
            if task_id in self.replaced:
                outcome = "replaced"
            elif task_id in self.kept_done:
                outcome = "kept: it is done"
            else:
                outcome = "kept the board's; `swarm run PLAN --replace` replaces it"
            out.append(f"task {task_id} differs from the plan ({', '.join(fields)}): {outcome}")
        return out


def compare(board: dict[str, Task], plan: Plan) -> Revision:
    """The plan's tasks already on the board whose definitions differ from the board's, field by field."""
    changed = {}
    for task in plan.tasks:
        current = board.get(task.id)
        if current is None or task.id in plan.completed:
            continue
        new, old = task.model_dump(mode="json"), current.model_dump(mode="json")
        fields = [f for f in DEFINED_FIELDS if new[f] != old[f]]
        if fields:
            changed[task.id] = fields
    return Revision(changed)


def replace(ledger: Ledger, plan: Plan, revision: Revision, agent: str) -> Revision:
    """Give each changed task that is not done its definition from the plan (one task_updated event each; a live
    attempt goes on, and the next attempt gets the new definition). Done tasks are kept and named."""
    by_id = {t.id: t for t in plan.tasks}
    board = ledger.board()
    for task_id, fields in revision.changed.items():
        if board[task_id].status == TaskStatus.DONE:
            revision.kept_done.append(task_id)
            continue
        ledger.update_task(task_id, agent, **{f: getattr(by_id[task_id], f) for f in fields})
        revision.replaced.append(task_id)
    return revision

"""Beads (`bd`): ready issues become tasks (`swarm run --beads`, `--bead-ids a,b`), and each bead's status
follows its task (see bead_sync.py).

The agentops swarm skill does not document the JSON of `bd`; this follows the beads project's own: `bd ready
--json` and `bd show ID --json` print issues as objects with `id`, `title`, `description`, `status`
(open, in_progress, blocked, closed) and `priority` (0 critical ... 4 backlog); `bd show` prints a list of
them (older versions one object).
"""

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from protocol.base import TaskId
from protocol.task import Task
from swarmd.integrations.tool import ToolError, run_tool
from swarmd.plans.plan import Plan

BD_REQUIRED = "Error: bd CLI required for --beads. Install bd (beads) or use swarm without beads integration."
BEAD_KEY = "bead_id"  # task metadata: the bead it stands for
STATUS_KEY = "bead_status"  # task metadata: the bead's status when the task was loaded
DIR_KEY = "bead_dir"  # task metadata: where `bd` was run (it finds its .beads database from there)
# The bead status a task's status asks for; a task that is only assigned leaves the bead as it is.
BEAD_STATUS = {"open": "open", "in_progress": "in_progress", "validating": "in_progress", "done": "closed",
               "blocked": "open", "cancelled": "open"}


class Bead(BaseModel):
    """The fields of a beads issue that a task needs; the rest of bd's JSON is ignored."""

    model_config = ConfigDict(extra="ignore")

    id: TaskId
    title: str = ""
    description: str = ""
    status: str = "open"
    priority: int = 2


def status_argv(bead_id: str, status: str) -> list[str]:
    """The bd command that puts a bead in `status` (open, in_progress or closed)."""
    if status == "closed":
        return ["bd", "close", bead_id]
    return ["bd", "update", bead_id, "--status", status]


def ready_beads(limit: int, cwd: Path) -> list[Bead]:
    """The first `limit` beads of `bd ready --json` (bd lists them best first)."""
    return _beads(_bd(["bd", "ready", "--json"], cwd), "bd ready --json")[:limit]


def show_bead(bead_id: str, cwd: Path) -> Bead:
    """One bead by id (`bd show ID --json`). Raises ToolError if bd does not know it."""
    beads = [b for b in _beads(_bd(["bd", "show", bead_id, "--json"], cwd), "bd show --json") if b.id == bead_id]
    if not beads:
        raise ToolError(f"bd show {bead_id} --json: no bead {bead_id!r} in its answer")
    return beads[0]


def load_beads(bead_ids: list[str] | None, limit: int, cwd: Path) -> Plan:
    """A plan of bead tasks: the beads named, or the first `limit` ready ones. Raises ToolError (bd failed or
    answered something else) or SwarmError (none ready)."""
    beads = [show_bead(b, cwd) for b in bead_ids] if bead_ids else ready_beads(limit, cwd)
    if not beads:
        raise ToolError("bd ready --json lists no ready beads: nothing to run")
    return Plan(tasks=[bead_task(b, cwd) for b in beads])


def bead_task(bead: Bead, cwd: Path) -> Task:
    """The task that works on `bead`: its id, title, description and priority, and the bead in metadata."""
    title = " ".join(bead.title.split())[:500] or bead.id
    return Task(id=bead.id, title=title, description=bead.description, priority=bead.priority,
                metadata={BEAD_KEY: bead.id, STATUS_KEY: bead.status, DIR_KEY: str(cwd)})


def _bd(argv: list[str], cwd: Path) -> Any:
    result = run_tool(argv, cwd=cwd)
    if not result.ok:
        raise ToolError(result.describe())
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise ToolError(f"`{' '.join(argv)}` did not print JSON: {exc}") from None


def _beads(data: Any, what: str) -> list[Bead]:
    items = [] if data is None else data if isinstance(data, list) else [data]  # bd prints null for none
    try:
        return [Bead.model_validate(item) for item in items]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ToolError(f"{what}: not a list of beads: {where}: {first['msg']}") from None

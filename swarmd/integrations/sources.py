"""Where `swarm run` gets its tasks: a plan file, an OL wave (`--from-wave`), or beads (`--beads`,
`--bead-ids`). The planning tools must be on PATH before anything is read from them."""

from collections.abc import Collection
from pathlib import Path

from protocol.names import validate_task_id
from swarmd.errors import SwarmError
from swarmd.integrations import beads, ol
from swarmd.integrations.tool import on_path
from swarmd.plans.plan import Plan, load_plan, load_wave


class ToolMissing(SwarmError):
    """A planning tool that a plan source needs is not on PATH. The message is the whole line to print."""


def read_plan(plan_file: str | None, wave_file: str | None, bead_source: str | bool, *, limit: int,
              known: Collection[str] = ()) -> Plan:
    """The plan from whichever source is given. `bead_source`: False (no beads), True (the first `limit` ready
    beads) or a comma-separated list of bead ids; `known`: ids already on the board, which `blocked_by` may
    name. Raises ToolMissing, PlanError or ToolError."""
    if wave_file is not None:
        if not on_path("ol"):
            raise ToolMissing(ol.OL_REQUIRED)
        return load_wave(Path(wave_file), known=known)
    if bead_source is not False:
        ids = _bead_ids(bead_source) if isinstance(bead_source, str) else None
        if not on_path("bd"):
            raise ToolMissing(beads.BD_REQUIRED)
        return beads.load_beads(ids, limit, Path.cwd())
    assert plan_file is not None
    return load_plan(Path(plan_file), known=known)


def _bead_ids(text: str) -> list[str]:
    """Ids from `a,b,c`, each a safe task id (checked before bd or a path sees it), in order, once each."""
    ids = [validate_task_id(part.strip()) for part in text.split(",") if part.strip()]
    if not ids:
        raise SwarmError("--bead-ids: give at least one bead id (a,b,c)")
    return list(dict.fromkeys(ids))

"""OL (`ol`): the hero-hunt waves that `swarm run --from-wave` loads, and the ratchet that reports a
validated bead back to OL (the agentops swarm skill's "completion backflow").

The contract: `ol` must be on PATH before a wave is loaded (no fallback). Once a wave task's own checks
pass, `ol hero ratchet <bead-id> --quest <quest-id>` runs; exit 0 means the bead is complete in OL and the
task is done, any other exit a failed attempt whose reason is ratchet's stderr.
"""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.task import Task
from swarmd.integrations.tool import TOOL_TIMEOUT, ending, run_tool

OL_REQUIRED = "Error: ol CLI required for --from-wave. Install ol or use swarm without wave integration."
BEAD_KEY = "ol_bead_id"
RATCHET_KEY = "ol_ratchet"  # the result of the last ratchet, in the task's metadata
_LAST_PART = re.compile(r"\.[^.]*$")


def quest_id(bead_id: str) -> str:
    """The quest a bead belongs to: its id without the last `.part` (`ol-527.1` -> `ol-527`; an id without a
    dot is its own quest), as the skill's `sed 's/\\.[^.]*$//'` does."""
    return _LAST_PART.sub("", bead_id)


def ratchet_argv(bead_id: str) -> list[str]:
    """The ratchet's command line (an id is a safe task id: it never starts with `-`)."""
    return ["ol", "hero", "ratchet", bead_id, "--quest", quest_id(bead_id)]


@dataclass(frozen=True)
class Ratchet:
    """One ratchet of one attempt at a bead. `code` is ol's exit status (None: it did not finish)."""

    bead: str
    quest: str
    attempt: int
    code: int | None
    stderr: str

    @property
    def passed(self) -> bool:
        return self.code == 0

    @property
    def how(self) -> str:
        """How ratchet ended: `exit N` or `did not finish`."""
        return ending(self.code)

    def reason(self) -> str:
        """Why the attempt failed: ratchet's stderr, under the command that said it."""
        return f"{' '.join(ratchet_argv(self.bead))} failed ({self.how}):\n{self.stderr.strip() or '(no stderr)'}"

    def record(self) -> dict[str, Any]:
        """The result as JSON for the task's metadata (`ol_ratchet`)."""
        return {"bead": self.bead, "quest": self.quest, "attempt": self.attempt, "exit": self.code,
                "passed": self.passed, "stderr": self.stderr.strip()}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Ratchet":
        """Read back `record()`. Raises KeyError or TypeError for something else."""
        return cls(record["bead"], record["quest"], record["attempt"], record["exit"], record.get("stderr", ""))


def wave_bead(task: Task) -> str | None:
    """The OL bead id of a task loaded from a wave, else None."""
    bead = task.metadata.get(BEAD_KEY)
    return bead if isinstance(bead, str) and bead else None


def recorded_ratchet(task: Task) -> Ratchet | None:
    """The ratchet result recorded on the task (its last attempt's), if any."""
    record = task.metadata.get(RATCHET_KEY)
    try:
        return Ratchet.from_record(record) if isinstance(record, dict) else None
    except (KeyError, TypeError):
        return None


def ratchet(bead_id: str, attempt: int, *, cwd: Path, timeout: float = TOOL_TIMEOUT) -> Ratchet:
    """Run `ol hero ratchet BEAD --quest QUEST` in `cwd` and say how it went (never raises for ol's failure)."""
    result = run_tool(ratchet_argv(bead_id), cwd=cwd, timeout=timeout)
    return Ratchet(bead_id, quest_id(bead_id), attempt, result.code, result.stderr)

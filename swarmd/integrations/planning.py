"""What the supervisor asks of the planning tools, in two calls: `after_checks` once a task's own checks
have passed (OL's ratchet, for a task from a wave), and `on_step` at each step of its loop (beads follow
their tasks). Neither does anything for a task that came from neither tool.
"""

import threading
from pathlib import Path

from protocol.event import EventType
from protocol.task import Task
from swarmd.integrations import ol
from swarmd.integrations.bead_sync import BeadFollower
from swarmd.integrations.beads import BEAD_KEY
from swarmd.ledger.log import Ledger

AGENT = "supervisor"


class PlanningTools:
    """The supervisor's hooks into `ol` and `bd`."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.beads = BeadFollower(ledger)
        self._has_beads = False
        self._tasks_seen = 0
        self._recording = threading.Lock()

    def checks_after(self, task: Task) -> bool:
        """Whether `after_checks` has anything to do for `task` (it came from an OL wave)."""
        return ol.wave_bead(task) is not None

    def after_checks(self, task: Task, attempt: int, workdir: Path) -> str | None:
        """Called off the supervisor's loop once `task`'s checks passed: None if it may be done, else why the
        attempt failed. A wave task is ratcheted in OL; the result is recorded on the task before it counts, so
        an attempt validated again after a restart is not ratcheted twice."""
        bead = ol.wave_bead(task)
        if bead is None:
            return None
        result = ol.recorded_ratchet(self.ledger.task(task.id))
        if result is None or result.attempt != attempt:
            result = ol.ratchet(bead, attempt, cwd=workdir)
            self._record(task.id, result)
        return None if result.passed else result.reason()

    def on_step(self) -> None:
        """Called at every step of the supervisor's loop: let the beads catch up with their tasks (off the loop)."""
        if not self._has_beads:
            board = self.ledger.board()
            if len(board) != self._tasks_seen:  # tasks are only ever added: look again only when some were
                self._tasks_seen = len(board)
                self._has_beads = any(BEAD_KEY in t.metadata for t in board.values())
        if self._has_beads:
            self.beads.poke()

    def _record(self, task_id: str, result: ol.Ratchet) -> None:
        with self._recording:  # metadata is replaced whole: one writer at a time
            metadata = {**self.ledger.task(task_id).metadata, ol.RATCHET_KEY: result.record()}
            self.ledger.update_task(task_id, AGENT, metadata=metadata)
        verdict = "bead complete in OL" if result.passed else f"failed: {result.stderr.strip()[:200]}"
        self.ledger.append(EventType.CUSTOM, AGENT, task_id, summary=f"ol hero ratchet {result.bead}: {verdict}",
                           kind="ol_ratchet", bead=result.bead, quest=result.quest, exit=result.code)

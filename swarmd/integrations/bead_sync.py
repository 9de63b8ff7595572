"""A bead's status follows its task: `bd update ID --status in_progress` when the task starts, `--status
open` when an attempt fails or its worker dies and the task goes back to open, `bd close ID` once it is
validated.

The follower is driven from the ledger: it reads the task events in order and records each change it makes
as a `custom` event of kind `bead_status`, first as an intent, then as applied. After a restart it replays
the ledger: a change with a record is not made again, one without is made now, and an intent without its
`applied` (the supervisor died while bd ran) is checked against `bd show` before it is repeated. So no
change is missed and none is applied twice. One follower works at a time (a lock file in `run/`), so one
that is finishing in a stopping supervisor and one in its successor never interleave.
"""

import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.event import Event, EventType
from swarmd.ledger import feed
from swarmd.integrations.beads import BEAD_KEY, BEAD_STATUS, DIR_KEY, STATUS_KEY, show_bead, status_argv
from swarmd.integrations.tool import ToolError, run_tool
from swarmd.ledger.log import Ledger

log = logging.getLogger("swarmd.beads")
RECORD = "bead_status"  # detail.kind of the follower's own events
AGENT = "supervisor"


@dataclass
class _Change:
    task: str
    bead: str
    status: str
    cause: int  # seq of the task event that asked for it
    cwd: Path


@dataclass
class _State:
    """What the ledger says so far: the bead tasks, the last status applied to each bead, and open intents."""

    offset: int = 0  # bytes of the ledger read
    done_through: int = 0  # the highest cause seq with a record (applied or failed)
    beads: dict[str, tuple[str, Path]] = field(default_factory=dict)  # task id -> (bead, bd's directory)
    applied: dict[str, str] = field(default_factory=dict)  # bead -> status
    intents: dict[str, _Change] = field(default_factory=dict)  # bead -> change begun but not recorded done


class BeadFollower:
    """Makes each bead's status follow its task's. `poke()` is cheap and may be called from the supervisor's
    loop at every step; the bd commands run on a thread of their own, one at a time, in ledger order."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.state = _State()
        self._lock = threading.Lock()
        self._dirty = False
        self._running = False

    def poke(self) -> None:
        """Catch up with the ledger soon, off the caller's thread."""
        with self._lock:
            self._dirty = True
            if self._running:
                return
            self._running = True
        # Not a daemon thread: a supervisor that stops finishes the bd command it began.
        threading.Thread(target=self._drain, name="bead-sync").start()

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._dirty:
                    self._running = False
                    return
                self._dirty = False
            try:
                self.sync()
            except Exception:  # noqa: BLE001 - logged; the next poke starts from the ledger again, which keeps the truth
                log.exception("bead status sync failed")

    def sync(self) -> None:
        """Read the ledger's new events and make the bead changes they ask for, in order."""
        with _exclusive(self.ledger.home.run_dir / "bead-sync.lock"):
            changes = self._read()
            for change in list(self.state.intents.values()):
                self._resume(change)
            for change in changes:
                if change.cause > self.state.done_through:
                    self._apply(change)

    # ----- reading the ledger -----------------------------------------------------------------------------
    def _read(self) -> list[_Change]:
        changes = []
        for offset, event in feed.read_events(self.ledger.path, self.state.offset):
            self.state.offset = offset
            if event is not None:
                change = self._fold(event)
                if change is not None:
                    changes.append(change)
        return changes

    def _fold(self, event: Event) -> _Change | None:
        state, detail = self.state, event.detail
        if event.type == EventType.TASK_CREATED and event.task:
            meta = detail.get("task", {}).get("metadata", {})
            if isinstance(meta.get(BEAD_KEY), str):
                state.beads[event.task] = (meta[BEAD_KEY], Path(meta.get(DIR_KEY) or "."))
                state.applied.setdefault(meta[BEAD_KEY], str(meta.get(STATUS_KEY) or "open"))
        elif event.type == EventType.CUSTOM and detail.get("kind") == RECORD:
            self._fold_record(event.task or "", detail)
        elif event.task in state.beads and "status" in detail:
            bead, cwd = state.beads[event.task]
            status = BEAD_STATUS.get(str(detail["status"]))
            if status is not None:
                return _Change(event.task, bead, status, event.seq, cwd)
        return None

    def _fold_record(self, task: str, detail: dict[str, Any]) -> None:
        bead, phase, cause = detail.get("bead"), detail.get("phase"), int(detail.get("cause", 0))
        if not isinstance(bead, str):
            return
        if phase == "intent":
            cwd = Path(detail.get("cwd") or ".")
            self.state.intents[bead] = _Change(task, bead, str(detail.get("to")), cause, cwd)
            return
        self.state.intents.pop(bead, None)
        self.state.done_through = max(self.state.done_through, cause)
        if phase == "applied":
            self.state.applied[bead] = str(detail.get("to"))

    # ----- changing beads ---------------------------------------------------------------------------------
    def _apply(self, change: _Change) -> None:
        if self.state.applied.get(change.bead) == change.status:
            return  # in_progress -> validating, say: the bead is already where it should be
        self._record(change, "intent")
        self._run(change)

    def _resume(self, change: _Change) -> None:
        """An intent from before a crash: bd may or may not have made the change. Ask bd before repeating it."""
        try:
            current = show_bead(change.bead, change.cwd).status
        except ToolError:
            current = None
        if current == change.status:
            self._record(change, "applied", verified=True)
        else:
            self._run(change)

    def _run(self, change: _Change) -> None:
        result = run_tool(status_argv(change.bead, change.status), cwd=change.cwd)
        if result.ok:
            self._record(change, "applied")
        else:
            self._record(change, "failed", error=result.describe())

    def _record(self, change: _Change, phase: str, **extra: Any) -> None:
        verb = {"intent": "setting", "applied": "set", "failed": "could not set"}[phase]
        error = f": {extra['error']}" if "error" in extra else ""
        detail = {"kind": RECORD, "phase": phase, "bead": change.bead, "to": change.status, "cause": change.cause,
                  "cwd": str(change.cwd), **extra}
        self.ledger.append(EventType.CUSTOM, AGENT, change.task or None,
                           summary=f"bead {change.bead}: {verb} {change.status}{error}"[:500], **detail)
        self._fold_record(change.task, detail)


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (made 0600 if missing, never followed if a symlink)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)

"""Prompts waiting for an interactive agent (STEER, replies): never typed into a busy agent, delivered when idle.

Each worker's queue is one JSON file under the home (`run/queues/<worker>.json`, 0600), changed under a file
lock beside it, so the operator's CLI adds to it while the supervisor delivers from it. `flush` delivers every
waiting prompt as one turn once the agent is idle, and removes them only after the delivery was verified; the
lock is not held while it delivers, so prompts added meanwhile wait for the next turn, in their order. Why the
prompts still wait (the composer holds someone's text, the last delivery failed) is the queue's note
(`run/queues/<worker>.note`), which `swarm status` shows.
"""

import json
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock

from protocol.ids import utcnow
from protocol.names import validate_agent_name
from swarmd.errors import SwarmError
from swarmd.workers.delivery import deliver_prompt
from swarmd.workers.tmux import TmuxServer

MAX_QUEUED = 100  # prompts waiting for one worker; more is refused (a person or program repeating itself)
MAX_TEXT = 100_000  # characters in one queued prompt


@dataclass(frozen=True)
class QueuedPrompt:
    """One waiting prompt: `kind` says what it is (steer, reply), `sender` who sent it, `queued` when (ISO UTC)."""

    kind: str
    sender: str
    text: str
    queued: str


class PromptQueue:
    """The prompts waiting for `worker`'s agent, in the order they came. Raises SwarmError for a full queue or
    a text too long; the worker's name is validated before any path is built from it."""

    def __init__(self, run_dir: Path, worker: str) -> None:
        directory = Path(run_dir) / "queues"
        self.path = directory / f"{validate_agent_name(worker)}.json"
        self.worker = worker
        self.note_path = directory / f"{worker}.note"
        self._lock = FileLock(str(directory / f"{worker}.lock"))

    def push(self, text: str, *, kind: str = "steer", sender: str = "operator") -> QueuedPrompt:
        if not text.strip():
            raise SwarmError(f"nothing to queue for {self.worker}: the text is empty")
        if len(text) > MAX_TEXT:
            raise SwarmError(f"text for {self.worker} is {len(text)} characters: at most {MAX_TEXT} can be queued")
        item = QueuedPrompt(kind=kind, sender=sender, text=text, queued=utcnow().isoformat())
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._lock:
            items = self._read()
            if len(items) >= MAX_QUEUED:
                raise SwarmError(f"{self.worker} already has {MAX_QUEUED} prompts waiting: wait until it takes them")
            self._write([*items, item])
        return item

    def items(self) -> list[QueuedPrompt]:
        """The waiting prompts, oldest first ([] when none)."""
        return self._read()

    def flush(self, tmux: TmuxServer, session: str, is_idle: Callable[[], bool], *, lock_dir: Path,
              timeout: float = 10.0, cancel: threading.Event | None = None) -> int:
        """If prompts wait and `is_idle()` says the agent is idle, deliver them all as one turn (verified, see
        `deliver_prompt`) and take them off the queue; return how many were delivered. Raises ComposerHeld or
        DeliveryError (the prompts stay queued for the next try). One flush at a time per worker (the
        supervisor's rule): two at once could both deliver the same prompts. `cancel` set ends its waits."""
        if not self.path.exists():
            return 0
        items = self.items()
        if not items or not is_idle():
            return 0
        deliver_prompt(tmux, session, as_prompt(items), lock_dir=lock_dir, timeout=timeout, cancel=cancel)
        self.remove(items)
        return len(items)

    def remove(self, delivered: list[QueuedPrompt]) -> None:
        """Take `delivered` (the queue's first prompts, as read before a delivery) off the queue; prompts added
        since stay, in their order."""
        with self._lock:
            items = self._read()
            self._write(items[len(delivered):] if items[:len(delivered)] == delivered else
                        [item for item in items if item not in delivered])

    def note(self) -> str | None:
        """Why the waiting prompts were not delivered yet (None: nothing is known to hold them)."""
        try:
            return self.note_path.read_text() or None
        except FileNotFoundError:
            return None

    def set_note(self, text: str | None) -> None:
        """Record (or with None, clear) why the waiting prompts were not delivered yet."""
        if text is None:
            self.note_path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.note_path.with_suffix(".note-tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(tmp, self.note_path)

    def _read(self) -> list[QueuedPrompt]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise SwarmError(f"the prompt queue {self.path} cannot be read ({exc}): move it aside") from None
        return [QueuedPrompt(**item) for item in raw]

    def _write(self, items: list[QueuedPrompt]) -> None:
        if not items:
            self.path.unlink(missing_ok=True)
            return
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump([asdict(item) for item in items], out)
        os.replace(tmp, self.path)


def as_prompt(items: list[QueuedPrompt]) -> str:
    """The waiting prompts as one turn: each under a line that says who sent it, oldest first."""
    return "\n\n".join(f"[{item.kind} from {item.sender}]\n{item.text}" for item in items)

"""The workers a host agent runs, kept in `run/host/roster.json` so that a restarted agent knows them again."""

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from protocol.names import validate_agent_name

KEEP_ENDED = 1000  # ended workers remembered: an order about one delivered again is then still known


@dataclass
class Entry:
    """One worker on this host: its attempt (the fencing token it reports under) and how far it has got.

    `ended`: its pane has ended (or it was stopped) and that was reported; `stop_at` (monotonic seconds of this
    agent) is when a worker told to stop with a grace period is ended if it has not exited by itself."""

    worker: str
    task: str
    attempt: int
    session: str
    ended: bool = False
    stop_at: float | None = None
    stop_order: str = ""  # the id of the stop order being carried out: its `stopped` event names it
    remove: bool = False  # the stop order asked for the session to go even if its pane is dead
    start_id: str = ""  # the id of the order that started it: its events' ids are made from it
    tree: dict[str, Any] | None = None  # its git worktree (`AttemptTree.detail()`), when its attempt is isolated
    home_tip: str = ""  # the commit of its branch the supervisor holds, as its stop order said
    command: str = ""  # an interactive worker's agent command (its prompts are typed into its pane); "" headless


class Roster:
    """The host's workers by name, saved (write to a temporary file, fsync, rename) after every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, Entry] = {}
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        for name, fields in data.items() if isinstance(data, dict) else ():
            try:
                entry = Entry(**{**fields, "stop_at": None})  # another process's monotonic clock means nothing here
                self.entries[validate_agent_name(name)] = entry
            except (TypeError, ValueError):
                continue

    def live(self) -> dict[str, int]:
        """Workers not yet ended: worker -> attempt."""
        return {e.worker: e.attempt for e in self.entries.values() if not e.ended}

    def save(self) -> None:
        """Write the roster, keeping at most KEEP_ENDED ended workers (the oldest go first)."""
        ended = [name for name, e in self.entries.items() if e.ended]
        for name in ended[:max(0, len(ended) - KEEP_ENDED)]:
            del self.entries[name]
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump({name: asdict(e) for name, e in self.entries.items()}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

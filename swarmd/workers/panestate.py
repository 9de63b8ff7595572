"""An interactive agent's state read from its pane: the fallback when its lifecycle hooks say nothing.

A look reads the visible screen and the pane's process tree. The screen gives a fingerprint (a hash of its
text) and markers: the agent's busy markers (a spinner line, "esc to interrupt"), a dialog (options under a
selection mark), a usage-limit notice, its composer. The rules:
- no live process in the pane (dead, gone, or its pid no longer running) is `exited`;
- a dialog is `needs_input`, with its text and options; a limit notice after the last prompt is
  `rate_limited`, with the reset time when the notice gives one;
- a busy marker is `working`;
- `idle` only after two quiet looks in a row (no busy marker, the composer shown) whose screens have the
  same fingerprint. Silence alone is never idleness: a screen that stops changing without a composer keeps
  its previous state, and before the first composer the agent is `starting`.
The idea of "two quiet looks" and of busy markers per agent comes from the tmux agent managers (claude-squad's
content hash, ntm's activity detection, agent-deck's status patterns).
"""

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from swarmd.workers.delivery import COMPOSER_MARKS, composer
from swarmd.workers.dialogs import Dialog, parse_dialog
from swarmd.workers.tmux import TmuxServer


class PaneState(StrEnum):
    STARTING = "starting"
    WORKING = "working"
    IDLE = "idle"
    NEEDS_INPUT = "needs_input"
    RATE_LIMITED = "rate_limited"
    EXITED = "exited"


@dataclass(frozen=True)
class AgentScreen:
    """What one agent CLI's screen shows: regexes (multiline) for its busy markers and its usage-limit notices."""

    name: str
    busy: tuple[str, ...]
    limits: tuple[str, ...] = (r"usage limit", r"limit reached", r"\brate limit", r"\b429\b")


# Claude Code 2.1.332: a spinner glyph and a verb ending in "…" ("✻ Jitterbugging…"), "esc to interrupt" below.
CLAUDE = AgentScreen("claude", busy=(r"esc to interrupt", r"^[·✢✳✶✻✽*∗] \S[^\n]*…"))
# Codex 0.171.0: "• Working (2s • esc to interrupt)", its bullet blinking to "◦" while a tool runs.
CODEX = AgentScreen("codex", busy=(r"esc to interrupt", r"^[•◦] Working \("))


def agent_screen(command: str) -> AgentScreen:
    """The screen patterns of the agent CLI a profile's command starts (`codex` named in it: Codex's; else
    Claude Code's)."""
    return CODEX if "codex" in re.findall(r"[\w.-]+", command) else CLAUDE

@dataclass(frozen=True)
class Reading:
    """What one screen shows, alone (no history): its fingerprint and markers."""

    fingerprint: str
    busy: bool
    composer: str | None
    dialog: Dialog | None
    limit: str | None  # the usage-limit notice's line


@dataclass(frozen=True)
class Look:
    """The state after one look, with what it was read from."""

    state: PaneState
    reading: Reading | None
    resets_at: datetime | None = None


def read_screen(screen: str, agent: AgentScreen) -> Reading:
    """Read one screen (a `capture-pane -p` text) of `agent`."""
    text = "\n".join(line.rstrip() for line in screen.splitlines()).strip("\n")
    return Reading(
        fingerprint=hashlib.sha256(text.encode()).hexdigest()[:16],
        busy=any(re.search(marker, text, re.MULTILINE) for marker in agent.busy),
        composer=composer(text), dialog=parse_dialog(text), limit=_limit_notice(text, agent))


def _limit_notice(screen: str, agent: AgentScreen) -> str | None:
    """The last usage-limit line after the last prompt the agent shows as sent, if any."""
    lines = screen.splitlines()
    prompts = [i for i, line in enumerate(lines) if line[:1] in COMPOSER_MARKS]
    sent = prompts[-2] if len(prompts) >= 2 else -1  # the last one is the composer
    for line in reversed(lines[sent + 1:]):
        if any(re.search(pattern, line, re.IGNORECASE) for pattern in agent.limits):
            return line.strip()
    return None


_EPOCH = re.compile(r"\|(\d{10})\b")
_IN = re.compile(r"(?:resets?|try again|retry)\s+in\s+((?:\d+\s*(?:days?|d|hours?|hrs?|h|minutes?|mins?|m|"
                 r"seconds?|secs?|s)\b[\s,and]*)+)", re.IGNORECASE)
_PART = re.compile(r"(\d+)\s*(d|h|m|s)", re.IGNORECASE)
_AT = re.compile(r"(?:resets?|try again|retry)(?:\s+at)?\s+(\d{1,2})(?::(\d{2}))?\s*([ap]\.?m\.?)?"
                 r"(?:\s*\(([A-Za-z_/+-]+)\))?", re.IGNORECASE)
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_reset(notice: str, now: datetime) -> datetime | None:
    """When a usage limit resets, from its notice: an epoch (`limit reached|1767225600`), a delay (`try again
    in 2 hours 3 minutes`, `resets in 45m`) or a clock time (`resets 3pm`, `resets at 15:30 (Europe/Paris)`),
    the next such time after `now` (an aware datetime). None when the notice gives no time."""
    if match := _EPOCH.search(notice):
        return datetime.fromtimestamp(int(match.group(1)), timezone.utc)
    if match := _IN.search(notice):
        seconds = sum(int(n) * _UNITS[unit.lower()] for n, unit in _PART.findall(match.group(1)))
        return now + timedelta(seconds=seconds)
    if match := _AT.search(notice):
        return _next_clock(now, match)
    return None


def _next_clock(now: datetime, match: re.Match[str]) -> datetime | None:
    hour, minute, meridiem, zone = int(match.group(1)), int(match.group(2) or 0), match.group(3), match.group(4)
    if meridiem:
        hour = hour % 12 + (12 if meridiem.lower().startswith("p") else 0)
    if hour > 23 or minute > 59:
        return None
    tz = now.tzinfo
    if zone:
        try:
            tz = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    local = now.astimezone(tz)
    at = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return at if at > local else at + timedelta(days=1)


def process_alive(pid: int, proc: Path = Path("/proc")) -> bool:
    """Whether `pid` or any of its descendants still runs (a zombie does not count)."""
    return any(_running(p, proc) for p in process_tree(pid, proc))


def process_tree(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """`pid` and its descendants (Linux /proc; elsewhere `pid` alone)."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        try:
            tasks = list((proc / str(current) / "task").iterdir())
        except OSError:
            continue  # ended while we looked
        for task in tasks:
            try:
                todo.extend(int(child) for child in (task / "children").read_text().split())
            except (OSError, ValueError):
                continue
    return tree


def _running(pid: int, proc: Path) -> bool:
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except FileNotFoundError:
        if proc.exists():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] not in (["Z"], ["X"])


@dataclass
class PaneWatcher:
    """Looks at one agent's pane over time; `look()` gives its state. `now` gives aware datetimes (injected
    for tests); one watcher per pane, used from one thread."""

    tmux: TmuxServer
    session: str
    agent: AgentScreen = CLAUDE
    now: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))
    state: PaneState = PaneState.STARTING
    _previous: Reading | None = field(default=None, init=False, repr=False)
    _quiet: int = field(default=0, init=False, repr=False)  # quiet looks in a row

    def look(self) -> Look:
        """Look at the pane now: its process tree, then its screen. Raises TmuxError if tmux fails."""
        pane = self.tmux.pane(self.session)
        if pane is None or pane.dead or not process_alive(pane.pid):
            return self._set(Look(PaneState.EXITED, None))
        return self.judge(read_screen(self.tmux.screen(self.session), self.agent))

    def judge(self, reading: Reading) -> Look:
        """The state after `reading`, given the looks before it; it becomes the watcher's state."""
        return self._set(self._judge(reading))

    def _judge(self, reading: Reading) -> Look:
        same = self._previous is not None and reading.fingerprint == self._previous.fingerprint
        self._quiet = self._quiet + 1 if not reading.busy and reading.composer is not None else 0
        self._previous = reading
        if reading.dialog is not None:
            return Look(PaneState.NEEDS_INPUT, reading)
        if reading.busy:
            return Look(PaneState.WORKING, reading)
        if reading.limit is not None:
            return Look(PaneState.RATE_LIMITED, reading, parse_reset(reading.limit, self.now()))
        if self._quiet >= 2 and same:
            return Look(PaneState.IDLE, reading)
        return Look(self.state if self.state != PaneState.EXITED else PaneState.STARTING, reading)

    def _set(self, look: Look) -> Look:
        self.state = look.state
        return look

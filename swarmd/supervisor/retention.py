"""Retention: how long a swarm home keeps what its workers leave behind, so that nothing grows without bound.

- An ended worker's log (`logs/<worker>.log`), prompt (`prompts/<worker>.md`) and exit status file are
  removed once older than `keep_logs_days`.
- A log bigger than `max_log_mb` (a live worker's, the supervisor's) keeps only its newest half, cut in
  place as logrotate's copytruncate does (a line written at that very moment may be lost).
- Read mail (a mailbox's `cur/`) is removed once older than `keep_mail_days`, and the oldest goes while
  `cur/` is bigger than `max_mail_mb`; each mailbox keeps its newest read message, whose sequence number
  anchors the mailbox's order.

The supervisor calls `prune_if_due` on every step and it works at most once a minute; `swarm clean`
(`Operator.clean`) applies the same rules by hand, with a dry run. Time is passed in, never read here.
Only regular files are touched (never a symlink or what it points to).
"""

import os
import stat
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from swarmd.config import Config
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.ledger.registry import STOPPED_STATUSES

MIB = 1 << 20
DAY = 86400.0
PRUNE_EVERY = 60.0  # seconds between two runs of `prune_if_due`
STAMP = "pruned"  # run/pruned: its mtime says when retention last ran
SUPERVISOR_LOG = "supervisor.log"


@dataclass(frozen=True)
class Removal:
    """One thing retention removes: `kind` is session, prompt, exit, log, log_cut or mail; `path` is a file
    (or a tmux session's name); `bytes` what it frees."""

    kind: str
    path: str
    bytes: int
    reason: str


@dataclass
class Report:
    """What was removed (or, with `dry_run`, would be)."""

    dry_run: bool
    removals: list[Removal] = field(default_factory=list)

    @property
    def freed(self) -> int:
        return sum(r.bytes for r in self.removals)

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "freed_bytes": self.freed, "removed": [asdict(r) for r in self.removals]}


def live_agents(ledger: Ledger) -> set[str]:
    """Agents the registry does not record as stopped or dead: their files are never removed by age."""
    return {name for name, entry in ledger.registry().items() if entry.status not in STOPPED_STATUSES}


def plan(home: SwarmHome, config: Config, live: set[str], now: datetime) -> list[Removal]:
    """Everything the retention settings say should go now; nothing is touched."""
    when = now.timestamp()
    return [*ended_worker_files(home, live, when, config.keep_logs_days * DAY), *oversized_logs(home, config),
            *old_mail(home, config, when)]


def ended_worker_files(home: SwarmHome, live: set[str], now: float, min_age: float) -> list[Removal]:
    """Logs, prompts and exit status files of workers not in `live`, last written at least `min_age` s ago."""
    found = []
    for kind, directory, suffix in (("log", home.logs_dir, ".log"), ("prompt", home.prompts_dir, ".md"),
                                    ("exit", home.run_dir / "exits", "")):
        for path, st in _regular_files(directory):
            worker = path.name.removesuffix(suffix) if suffix else path.name
            if (suffix and not path.name.endswith(suffix)) or path.name == SUPERVISOR_LOG or worker in live:
                continue
            if now - st.st_mtime >= min_age:
                days = (now - st.st_mtime) / DAY
                found.append(Removal(kind, str(path), st.st_size, f"{worker} has ended; {days:.1f} days old"))
    return found


def oversized_logs(home: SwarmHome, config: Config) -> list[Removal]:
    """Logs bigger than `max_log_mb`, each to be cut to its newest half."""
    limit = int(config.max_log_mb * MIB)
    return [Removal("log_cut", str(path), st.st_size - limit // 2, f"bigger than max_log_mb ({config.max_log_mb:g})")
            for path, st in _regular_files(home.logs_dir) if path.suffix == ".log" and st.st_size > limit]


def old_mail(home: SwarmHome, config: Config, now: float) -> list[Removal]:
    """Read messages past `keep_mail_days`, then the oldest while a `cur/` is over `max_mail_mb`; each
    mailbox's newest read message stays."""
    found = []
    max_age, limit = config.keep_mail_days * DAY, config.max_mail_mb * MIB
    for box in _subdirs(home.mail_dir):
        files = sorted(_regular_files(box / "cur"), key=lambda f: f[0].name)[:-1]  # names sort by sequence
        total = sum(st.st_size for _, st in files) + _newest_size(box / "cur")
        for path, st in files:
            if now - st.st_mtime >= max_age:
                reason = f"read mail older than keep_mail_days ({config.keep_mail_days:g})"
            elif total > limit:
                reason = f"{box.name}'s read mail is over max_mail_mb ({config.max_mail_mb:g})"
            else:
                continue
            total -= st.st_size
            found.append(Removal("mail", str(path), st.st_size, reason))
    return found


def apply(removals: list[Removal]) -> list[Removal]:
    """Remove (or cut) the files; returns those done. A file gone meanwhile, or one that cannot be removed,
    is skipped: retention never fails the caller for one file. Sessions are not files: the caller ends them."""
    done = []
    for removal in removals:
        try:
            if removal.kind == "log_cut":
                _keep_newest(Path(removal.path), removal.bytes)
            elif removal.kind != "session":
                os.unlink(removal.path)
        except OSError:
            continue
        done.append(removal)
    return done


def prune(home: SwarmHome, config: Config, live: set[str], now: datetime, dry_run: bool = False) -> Report:
    """Apply the retention settings now (see the module's docstring)."""
    removals = plan(home, config, live, now)
    return Report(dry_run, removals if dry_run else apply(removals))


def prune_if_due(home: SwarmHome, config: Config, ledger: Ledger, now: datetime) -> Report | None:
    """`prune`, if it has not run in the last minute (by the mtime of run/pruned); None when not due."""
    stamp = home.run_dir / STAMP
    when = now.timestamp()
    try:
        if 0 <= when - os.stat(stamp, follow_symlinks=False).st_mtime < PRUNE_EVERY:
            return None
    except FileNotFoundError:
        pass
    fd = os.open(stamp, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.close(fd)
    os.utime(stamp, (when, when), follow_symlinks=False)
    return prune(home, config, live_agents(ledger), now)


def with_log_age(config: Config, days: float | None) -> Config:
    """`config` with `keep_logs_days` replaced (for `swarm clean --older-than`)."""
    return config if days is None else config.model_copy(update={"keep_logs_days": days})


def _keep_newest(path: Path, cut: int) -> None:
    """Drop the first `cut` bytes of the file, in place (writers that append keep writing to its end)."""
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        keep = os.pread(fd, max(0, size - cut), min(cut, size))
        os.pwrite(fd, keep, 0)
        os.ftruncate(fd, len(keep))
    finally:
        os.close(fd)


def _regular_files(directory: Path) -> list[tuple[Path, os.stat_result]]:
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode):
            found.append((Path(entry.path), st))
    return found


def _subdirs(directory: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(directory) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _newest_size(directory: Path) -> int:
    files = sorted(_regular_files(directory), key=lambda f: f[0].name)
    return files[-1][1].st_size if files else 0

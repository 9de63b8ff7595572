"""Heartbeats: a sign of life is the mtime of `run/heartbeats/<agent>`, frequent, cheap and never a ledger event.

Standard library only: a worker touches its heartbeat from its start-up path, before any model is loaded.
"""

import os
from datetime import UTC, datetime
from pathlib import Path

from protocol.names import validate_agent_name
from swarmd.home import make_private_dir


def heartbeat_path(heartbeats_dir: Path, name: str) -> Path:
    """The heartbeat file of agent `name`; InvalidName if the name is not a safe agent name."""
    return heartbeats_dir / validate_agent_name(name)


def touch_heartbeat(heartbeats_dir: Path, name: str, now: datetime) -> None:
    """Record a sign of life for `name` at `now` (the file's mtime)."""
    path = heartbeat_path(heartbeats_dir, name)
    make_private_dir(heartbeats_dir)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.utime(fd, (now.timestamp(), now.timestamp()))
    finally:
        os.close(fd)


def read_heartbeat(heartbeats_dir: Path, name: str) -> datetime | None:
    """When `name` last showed a sign of life (UTC), None if it never did."""
    try:
        mtime = os.stat(heartbeat_path(heartbeats_dir, name), follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return None
    return datetime.fromtimestamp(mtime, UTC)

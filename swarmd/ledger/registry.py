"""The registry: agents as a fold of ledger events, plus heartbeats kept out of the log.

A heartbeat is the mtime of `run/heartbeats/<agent>`: frequent, cheap, and never an event. An agent is
STALE, at read time only, when its last sign of life is older than `stale_after`.
"""

from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from protocol.agent import AgentStatus, RegistryEntry
from protocol.event import Event, EventType
from swarmd.ledger.heartbeats import heartbeat_path, read_heartbeat, touch_heartbeat  # noqa: F401 (the registry's API too)

Registry = dict[str, RegistryEntry]

UPDATABLE_FIELDS = frozenset({"status", "task", "session", "pid", "role", "host", "metadata"})
STOPPED_STATUSES = frozenset({AgentStatus.STOPPED, AgentStatus.DEAD})
LIVE_STATUSES = frozenset({AgentStatus.STARTING, AgentStatus.IDLE, AgentStatus.BUSY})


def apply(agents: Registry, event: Event) -> Registry:
    """Fold one event into `agents` (in place) and return it; never raises on an odd event."""
    if event.type == EventType.AGENT_REGISTERED:
        try:
            entry = RegistryEntry.model_validate(event.detail.get("entry"))
        except ValidationError:
            return agents
        agents[entry.name] = entry
        return agents
    # The agent an event is about: detail["name"], else (an agent reporting on itself) its author.
    name = event.detail.get("name", event.agent)
    entry = agents.get(name) if isinstance(name, str) else None
    if entry is None:
        return agents
    if event.type == EventType.AGENT_UPDATED and isinstance(event.detail.get("fields"), dict):
        agents[entry.name] = with_fields(entry, event.detail["fields"]) or entry
    elif event.type == EventType.AGENT_STARTED:
        entry.status = AgentStatus.BUSY
    elif event.type == EventType.AGENT_STOPPED:
        status = event.detail.get("status", AgentStatus.STOPPED)
        if status in STOPPED_STATUSES:
            entry.status, entry.task = AgentStatus(status), None
    return agents


def fold(events: Iterable[Event], agents: Registry | None = None) -> Registry:
    registry: Registry = {} if agents is None else agents
    for event in events:
        apply(registry, event)
    return registry


def with_fields(entry: RegistryEntry, fields: Mapping[str, Any]) -> RegistryEntry | None:
    """A copy of `entry` with `fields` changed and validated; None if they do not validate."""
    known = {k: v for k, v in fields.items() if k in UPDATABLE_FIELDS}
    if known.get("status") == AgentStatus.STALE:
        return None
    try:
        return RegistryEntry.model_validate({**entry.model_dump(), **known})
    except ValidationError:
        return None


def with_liveness(agents: Registry, heartbeats_dir: Path, now: datetime, stale_after: float) -> Registry:
    """A copy of `agents` with each last heartbeat filled in, and a live agent silent too long shown STALE.

    Entries that change are copied, never changed in place: `agents` may be a cached projection.
    """
    shown: Registry = {}
    for name, entry in agents.items():
        beat = read_heartbeat(heartbeats_dir, entry.name)
        last = beat if beat is not None and (entry.last_heartbeat is None or beat > entry.last_heartbeat) \
            else entry.last_heartbeat
        stale = entry.status in LIVE_STATUSES and (now - (last or entry.started)).total_seconds() > stale_after
        if last != entry.last_heartbeat or stale:
            entry = entry.model_copy(update={"last_heartbeat": last, **({"status": AgentStatus.STALE} if stale else {})})
        shown[name] = entry
    return shown

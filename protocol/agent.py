"""A registry entry: one agent known to the swarm."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from protocol.base import AgentName, Model
from protocol.ids import utcnow


class AgentStatus(StrEnum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    STALE = "stale"  # derived at read time from the heartbeat age, never stored
    STOPPED = "stopped"
    DEAD = "dead"


class RegistryEntry(Model):
    name: AgentName
    role: str = "worker"
    status: AgentStatus = AgentStatus.STARTING
    session: str | None = None
    pid: int | None = None
    host: str = ""
    task: str | None = None
    started: datetime = Field(default_factory=utcnow)
    last_heartbeat: datetime | None = None
    metadata: dict[str, Any] = {}

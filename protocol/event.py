"""A ledger event: one line of `ledger/events.jsonl`, and the feed that people tail."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from protocol.base import Model
from protocol.ids import new_id, utcnow


class EventType(StrEnum):
    # agents
    AGENT_REGISTERED = "agent_registered"
    AGENT_STARTED = "agent_started"
    AGENT_STOPPED = "agent_stopped"
    AGENT_UPDATED = "agent_updated"
    # tasks: state
    TASK_CREATED = "task_created"
    TASK_UPDATED = "task_updated"
    TASK_ASSIGNED = "task_assigned"
    TASK_STARTED = "task_started"
    TASK_VALIDATING = "task_validating"
    TASK_COMPLETED = "task_completed"
    TASK_FAILED = "task_failed"
    TASK_CHECKPOINT = "task_checkpoint"
    TASK_RETRIED = "task_retried"  # a fresh budget of attempts (`swarm retry`)
    NOTE_ADDED = "note_added"
    # the feed vocabulary users already know
    PROGRESS = "progress"
    BLOCKER_FOUND = "blocker_found"
    QUESTION = "question"
    FINDING = "finding"
    FILE_CHANGED = "file_changed"
    COST_UPDATE = "cost_update"
    CUSTOM = "custom"
    # the supervisor
    SUPERVISOR_STARTED = "supervisor_started"
    SUPERVISOR_STOPPED = "supervisor_stopped"
    SUPERVISOR_RECOVERED = "supervisor_recovered"
    WORKER_SPAWNED = "worker_spawned"
    # git isolation and integration
    WORKTREE_CREATED = "worktree_created"  # an attempt's branch and worktree
    MERGE_QUEUED = "merge_queued"  # a validated attempt joins the merge queue (task_completed says it landed)
    WORKTREE_REMOVED = "worktree_removed"  # `swarm clean` removed an attempt's worktree (its branch if merged)


class Event(Model):
    seq: int = 0  # assigned by the ledger under its lock
    id: str = Field(default_factory=new_id)
    ts: datetime = Field(default_factory=utcnow)
    agent: str
    type: EventType
    task: str | None = None
    summary: str = ""
    detail: dict[str, Any] = {}

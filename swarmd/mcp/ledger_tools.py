"""The board, feed and registry tools (the Vers coordination skill's names and arguments) over the Ledger.

Each returns JSON text shaped as the CLI's `--json` answer to the same question. Who acts is the server's
identity; a worker changes or annotates only a task it holds (the ledger's `expect_assignee`).
"""

from typing import Any

from protocol.agent import RegistryEntry
from protocol.event import EventType
from protocol.task import COORDINATED, NoteKind, TaskStatus
from swarmd.ledger.log import validated
from swarmd.ledger.registry import LIVE_STATUSES as LIVE_AGENTS
from swarmd.mcp.context import ToolContext, to_json
from swarmd.mcp.identity import Refused

RUNNING = "running"  # the Vers registry status: any live agent (starting, idle or busy)
FEED_LIMIT = 50  # feed_list's default: the newest events, enough to see what happened without flooding a context


class LedgerTools:
    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx

    @property
    def _held_by(self) -> str | None:
        """`expect_assignee` for a task change: a worker may only touch the tasks it holds."""
        return None if self.ctx.identity.coordinator else self.ctx.identity.agent

    # -- board ---------------------------------------------------------------------------------------------------

    def board_create_task(self, title: str, description: str = "", tags: list[str] | None = None,
                          createdBy: str | None = None, blockedBy: list[str] | None = None,
                          validation: dict[str, Any] | None = None) -> str:
        """Add a task to the board; returns it. A coordinator's task is dispatched by the coordinator itself
        (board_update_task + swarm_task); a worker's is left to the supervisor to assign."""
        me = self.ctx.identity.claim(createdBy, "create tasks")
        fields: dict[str, Any] = {"title": title, "description": description, "tags": tags or [],
                                  "blocked_by": blockedBy or [], "validation": validation}
        if self.ctx.identity.coordinator:
            fields["metadata"] = {"dispatch": COORDINATED}
        return to_json(self.ctx.ledger.add_new_task(fields, me).detail["task"])

    def board_list_tasks(self, status: TaskStatus | None = None, tag: str | None = None,
                         assignee: str | None = None) -> str:
        """The tasks on the board, filtered by status, tag and assignee (as `swarm board --json`)."""
        return to_json([t for t in self.ctx.ledger.board().values()
                        if (status is None or t.status == status) and (tag is None or tag in t.tags)
                        and (assignee is None or t.assignee == assignee)])

    def board_update_task(self, id: str, status: TaskStatus | None = None, assignee: str | None = None,
                          fields: dict[str, Any] | None = None) -> str:
        """Change a task's status (checked against the status table), assignee (empty to clear) or other fields
        (title, description, tags, priority, blocked_by...); returns the task. A worker may change only a task
        it holds, and reports its own work done with mail_send(DONE) so that it is validated."""
        changes = dict(fields or {})
        if assignee is not None:
            changes["assignee"] = assignee or None
        if not changes and status is None:
            raise Refused("nothing to change: give status, assignee or fields")
        if self._held_by and status in (TaskStatus.DONE, TaskStatus.VALIDATING) \
                and not self.ctx.ledger.task(id).coordinated():
            raise Refused(f"report {id} done with mail_send(type=DONE, to=supervisor): the supervisor validates "
                          "it before it counts")
        if changes:
            self.ctx.ledger.update_task(id, self.ctx.identity.agent, expect_assignee=self._held_by, **changes)
        if status is not None:
            self.ctx.ledger.transition(id, status, self.ctx.identity.agent, expect_assignee=self._held_by)
        return to_json(self.ctx.ledger.task(id))

    def board_add_note(self, id: str, kind: NoteKind, text: str) -> str:
        """Attach a finding, blocker, question or update to a task (a worker: only to a task it holds)."""
        return to_json(self.ctx.ledger.add_note(id, kind, text, self.ctx.identity.agent,
                                                expect_assignee=self._held_by))

    # -- feed ----------------------------------------------------------------------------------------------------

    def feed_publish(self, type: EventType, summary: str, agent: str | None = None,
                     detail: str | dict[str, Any] | None = None, task: str | None = None) -> str:
        """Append an event to the feed as this agent (naming another `agent` is refused); returns it."""
        me = self.ctx.identity.claim(agent, "publish")
        extra = {} if detail is None else {"detail": detail}
        return to_json(self.ctx.ledger.append(type, me, task, summary, **extra))

    def feed_list(self, limit: int = FEED_LIMIT, type: EventType | None = None, agent: str | None = None,
                  task: str | None = None) -> str:
        """The newest `limit` matching events, oldest first (as `swarm feed --json -n LIMIT`)."""
        ledger, limit = self.ctx.ledger, max(0, limit)
        filters: dict[str, Any] = {"types": [type] if type else None, "agent": agent, "task": task}
        since = max(0, ledger.last_seq() - limit) if not (type or agent or task) else 0
        shown = ledger.events(since_seq=since, **filters)
        return to_json(shown[len(shown) - limit:] if len(shown) > limit else shown)

    def feed_stats(self) -> str:
        """Events by type and agent, tasks and agents by status (as `swarm stats --json`)."""
        return to_json(self.ctx.ledger.stats())

    # -- registry ------------------------------------------------------------------------------------------------

    def registry_register(self, name: str | None = None, role: str = "worker",
                          metadata: dict[str, Any] | None = None) -> str:
        """Register an agent (a worker: only itself) and record a heartbeat; returns the entry."""
        name = name or self.ctx.identity.agent
        if name == "supervisor" or (not self.ctx.identity.coordinator and name != self.ctx.identity.agent):
            raise Refused(f"you are {self.ctx.identity.agent}: you cannot register {name}")
        entry = validated(RegistryEntry, {"name": name, "role": role, "metadata": metadata or {}})
        self.ctx.ledger.register_agent(entry, self.ctx.identity.agent)
        self.ctx.ledger.heartbeat(name)
        return to_json(entry)

    def registry_discover(self, role: str) -> str:
        """The live agents of a role, stale, stopped and dead ones left out (as `swarm registry discover --json`)."""
        return to_json(sorted((a for a in self.ctx.ledger.registry().values()
                               if a.role == role and a.status in LIVE_AGENTS), key=lambda a: a.name))

    def registry_heartbeat(self, name: str | None = None) -> str:
        """A sign of life for this agent (the coordinator may beat for any it registered)."""
        name = name or self.ctx.identity.agent
        if not self.ctx.identity.coordinator:
            self.ctx.identity.claim(name, "send heartbeats")
        self.ctx.ledger.heartbeat(name)
        return to_json({"name": name, "ok": True})

    def registry_list(self, status: str | None = None, role: str | None = None) -> str:
        """Every registered agent (as `swarm registry list --json`); status `running` means any live one."""
        return to_json([a for a in self.ctx.ledger.registry().values()
                        if (role is None or a.role == role) and (status is None or a.status == status
                                                                 or (status == RUNNING and a.status in LIVE_AGENTS))])


TOOL_NAMES = ("board_create_task", "board_list_tasks", "board_update_task", "board_add_note", "feed_publish",
              "feed_list", "feed_stats", "registry_register", "registry_discover", "registry_heartbeat",
              "registry_list")

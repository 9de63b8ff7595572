"""The swarm tools of a coordinator agent (Vers' vers_swarm_*): spawn standing workers by label, hand each
the board task it holds, look, wait, read, tear down. A worker's server refuses them all."""

from dataclasses import asdict

from swarmd.mcp.context import ToolContext, to_json

WAIT_LIMIT = 3600.0  # seconds swarm_wait may block at most


class SwarmTools:
    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx

    def swarm_spawn(self, count: int | None = None, labels: list[str] | None = None,
                    profile: str | None = None) -> str:
        """Start `count` workers (default: one per label) named worker-<label>, each in its own tmux session,
        registered and idle until swarm_task gives it work; `profile` is a swarm.toml worker profile."""
        self.ctx.identity.need_coordinator("swarm_spawn")
        return to_json(self.ctx.crew.spawn(count, labels or [], profile))

    def swarm_task(self, agentId: str, task: str) -> str:
        """Send a spawned worker (`auth` or `worker-auth`) its work: `task` is the text it acts on, for the board
        task assigned to it (board_update_task {id, status: in_progress, assignee: worker-<label>} first)."""
        self.ctx.identity.need_coordinator("swarm_task")
        return to_json(self.ctx.crew.give(agentId, task))

    def swarm_status(self) -> str:
        """The supervisor, every worker (task, state, pane, heartbeat age) and tasks by status (as
        `swarm status --json`)."""
        self.ctx.identity.need_coordinator("swarm_status")
        report = self.ctx.operator.status()
        return to_json({**report, "workers": [asdict(w) for w in report["workers"]]})

    def swarm_read(self, agentId: str) -> str:
        """What a spawned worker's pane printed, as plain text (as `swarm logs NAME --plain`)."""
        self.ctx.identity.need_coordinator("swarm_read")
        return self.ctx.crew.read(agentId)

    def swarm_wait(self, timeoutSeconds: float = 600.0) -> str:
        """Block until every spawned worker has ended or `timeoutSeconds` pass; returns {ended, running}."""
        self.ctx.identity.need_coordinator("swarm_wait")
        return to_json(self.ctx.crew.wait(min(max(0.0, timeoutSeconds), WAIT_LIMIT)))

    def swarm_teardown(self) -> str:
        """End every worker session of the swarm (as `swarm teardown --json`): never the supervisor, never
        the coordinator's own pane."""
        self.ctx.identity.need_coordinator("swarm_teardown")
        return to_json({"ended": self.ctx.crew.teardown()})


TOOL_NAMES = ("swarm_spawn", "swarm_task", "swarm_status", "swarm_read", "swarm_wait", "swarm_teardown")

"""The reservation tools over `swarmd.git.reservations`: advisory file reservations, always this agent's."""

from swarmd.git.reservations import DEFAULT_TTL, Reservations
from swarmd.mcp.context import ToolContext, to_json


class ReservationTools:
    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx
        self.store = Reservations(ctx.home)

    def reserve_paths(self, paths: list[str], exclusive: bool = True, ttl: float = DEFAULT_TTL) -> str:
        """Reserve files, `dir/` or globs for this agent for `ttl` seconds; an overlap with another agent's is
        granted and reported to both. Returns {granted, conflicts} (as `swarm reserve --json`)."""
        granted, conflicts = self.store.reserve(self.ctx.identity.agent, paths, exclusive=exclusive, ttl=ttl)
        return to_json({"granted": granted, "conflicts": conflicts})

    def release_paths(self, paths: list[str] | None = None) -> str:
        """Release this agent's reservations of `paths` (all of them when none are named): {released}."""
        return to_json({"released": self.store.release(self.ctx.identity.agent, paths or None)})

    def list_reservations(self, agent: str | None = None) -> str:
        """The live reservations, of `agent` only when given (as `swarm reservations --json`)."""
        return to_json(self.store.list(agent))


TOOL_NAMES = ("reserve_paths", "release_paths", "list_reservations")

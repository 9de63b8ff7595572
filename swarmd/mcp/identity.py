"""Who the MCP server acts for: taken from the environment the swarm set, never from a tool's arguments.

A worker's server has SWARM_AGENT and the token the swarm issued to it at spawn (`swarmd.tokens`); the
agent must be in the registry and not the supervisor. Without SWARM_AGENT the server serves the coordinator
(a person's own agent session, set up by `swarm mcp --print-config`), which needs the coordinator's token.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from protocol.names import validate_agent_name
from swarmd.errors import SwarmError
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.tokens import TOKEN_ENV, BadToken, check_token

COORDINATOR = "coordinator"
SUPERVISOR = "supervisor"


class Refused(SwarmError):
    """A tool call the caller's identity does not allow."""


@dataclass(frozen=True)
class Identity:
    """The agent a server acts for; `coordinator` is True for the coordinator (the swarm tools are its alone)."""

    agent: str
    coordinator: bool

    def claim(self, named: str | None, what: str) -> str:
        """The acting agent: `named` (a tool's `agent`/`createdBy`) must be this one, if given."""
        if named and named != self.agent:
            raise Refused(f"you are {self.agent}: you cannot {what} as {named}")
        return self.agent

    def need_coordinator(self, tool: str) -> None:
        if not self.coordinator:
            raise Refused(f"{tool} is the coordinator's tool; worker {self.agent} cannot use it")


def identify(environ: Mapping[str, str], home: SwarmHome, ledger: Ledger) -> Identity:
    """The identity the environment proves. Raises SwarmError (bad name, BadToken, unknown agent)."""
    named = environ.get("SWARM_AGENT")
    agent = validate_agent_name(named) if named else COORDINATOR
    try:
        check_token(home, agent, environ.get(TOKEN_ENV))
    except BadToken:
        if named:
            raise
        raise BadToken(f"no SWARM_AGENT and no valid coordinator token in ${TOKEN_ENV}: use the config "
                       "`swarm mcp --print-config claude|codex` prints") from None
    if agent == SUPERVISOR:
        raise Refused("the MCP server never acts as the supervisor")
    if named and agent not in ledger.registry():
        raise SwarmError(f"agent {agent} is not in the registry of {home.root}")
    return Identity(agent, coordinator=not named)

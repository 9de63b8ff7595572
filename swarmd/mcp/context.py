"""What every tool of one server shares: the home's library objects and the identity it serves."""

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import BaseModel

from agentmail import PostOffice
from swarmd.crew import Crew
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.mcp.identity import Identity, identify
from swarmd.operate import Operator


@dataclass
class ToolContext:
    """One swarm home seen by one identity; built once per server process."""

    operator: Operator
    identity: Identity
    post: PostOffice = field(init=False)

    def __post_init__(self) -> None:
        self.post = PostOffice(self.home.root, durable=self.operator.config.durable)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "ToolContext":
        """The home named by SWARM_HOME (else found upward) and the identity the environment proves.
        Raises SwarmError (no home, bad token, unknown agent)."""
        environ = dict(os.environ if environ is None else environ)
        operator = Operator(SwarmHome.at(environ.get("SWARM_HOME")))
        return cls(operator, identify(environ, operator.home, operator.ledger))

    @property
    def home(self) -> SwarmHome:
        return self.operator.home

    @property
    def ledger(self) -> Ledger:
        return self.operator.ledger

    @cached_property
    def crew(self) -> Crew:
        return Crew(self.operator, self.identity.agent)


def to_json(value: Any) -> str:
    """Tool results as JSON text: pydantic models as their JSON form (as the CLI's --json prints them)."""
    return json.dumps(_plain(value), default=str)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value

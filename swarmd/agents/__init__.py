"""One adapter per agent CLI (claude, codex, script): the config a worker's agent is given before it starts, the
hooks that report its state, its permission policy, and where its cost records are.

Kept import-light: `python -m swarmd.agents.hook` runs on every tool call an agent makes.
"""

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from swarmd.agents.base import Agent

ADAPTERS = {"claude": ("swarmd.agents.claude", "ClaudeAgent"), "codex": ("swarmd.agents.codex", "CodexAgent"),
            "script": ("swarmd.agents.script", "ScriptAgent")}


def adapter(name: str) -> "Agent":
    """The adapter of agent CLI `name` (one of ADAPTERS); KeyError for another."""
    module, cls = ADAPTERS[name]
    return getattr(import_module(module), cls)()

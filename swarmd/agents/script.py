"""A plain script worker (`--script`): no agent CLI, no config to write; its wrapper reports for it."""

from swarmd.agents.base import Agent


class ScriptAgent(Agent):
    name = "script"

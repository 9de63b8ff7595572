"""The `swarm` command line: a thin layer over the swarmd library."""

import click

from swarmd.cli.common import SwarmGroup


@click.group(cls=SwarmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="swarmd")
def main() -> None:
    """Run a swarm of coding agents in tmux, with typed Agent Mail and an append-only ledger."""


def _load_commands() -> None:
    # Each module adds its commands to `main`; imported here so `swarm --help` lists them all.
    from swarmd.cli import git_cmds, ledger_cmds, ops_cmds, setup_cmds  # noqa: F401
    from swarmd.cli import agent_cmds, dispatch_cmds, mcp_cmds, skills_cmds, web_cmds  # noqa: F401


_load_commands()

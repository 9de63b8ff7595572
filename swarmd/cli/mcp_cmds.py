"""`swarm mcp`: the swarm's tools for agents, over the Model Context Protocol (stdio)."""

import click

from swarmd.cli import main
from swarmd.cli.common import get_home, home_option


@main.command("mcp")
@home_option
@click.option("--print-config", "print_config", type=click.Choice(["claude", "codex"]), default=None,
              help="Print what to add to your own claude or codex to drive this swarm as its coordinator "
                   "(with a fresh coordinator token: a config printed before stops working).")
def mcp(home: str | None, print_config: str | None) -> None:
    """Serve the board, feed, registry, swarm and mail tools over stdio, as the agent the environment names
    (SWARM_AGENT and its token, set at spawn), else as the coordinator."""
    import os
    import sys

    swarm_home = get_home(home)
    if print_config:
        from swarmd.mcp.config import coordinator_config

        click.echo(coordinator_config(swarm_home, print_config), nl=False)
        return
    os.environ["SWARM_HOME"] = str(swarm_home.root)
    from swarmd.mcp.server import main as serve  # the SDK is imported only here: other commands stay fast

    sys.exit(serve())

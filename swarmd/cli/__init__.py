"""The `swarm` command line: a thin layer over the swarmd library.

Each `*_cmds` module adds its commands to `main`; it is imported only when one of them runs (or for
`--help`). A new module is one `main.lazy(...)` line below, naming it and the commands it defines.
"""

import click

from swarmd import __version__
from swarmd.cli.common import SwarmGroup


@click.group(cls=SwarmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="swarm")
def main() -> None:
    """Run a swarm of coding agents in tmux, with typed Agent Mail and an append-only ledger."""


main.lazy("swarmd.cli.ledger_cmds", "init", "task", "board", "feed", "stats", "registry")
main.lazy("swarmd.cli.ops_cmds", "up", "down", "run", "status", "attach", "logs", "steer", "reply", "kill",
          "teardown", "clean", "demo", "worker")
main.lazy("swarmd.cli.setup_cmds", "plan", "retry", "doctor", "reference")
main.lazy("swarmd.cli.dispatch_cmds", "pause", "resume")
main.lazy("swarmd.cli.web_cmds", "web")
main.lazy("swarmd.cli.agent_cmds", "answer")
main.lazy("swarmd.cli.git_cmds", "reserve", "release", "reservations", "diff", "queue", "land")
main.lazy("swarmd.cli.mcp_cmds", "mcp")
main.lazy("swarmd.cli.skills_cmds", "skills")
main.lazy("swarmd.cli.host_cmds", "host", "hosts")
main.lazy("swarmd.cli.login_cmds", "logins")

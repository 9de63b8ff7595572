"""Commands that pause and resume dispatch: running attempts go on, no new one starts while paused."""

import click

from swarmd.cli import main
from swarmd.cli.common import dump_json, get_home, home_option, json_option


@main.command()
@home_option
@json_option
def pause(home: str | None, as_json: bool) -> None:
    """Pause dispatch: the supervisor starts no new attempt until `swarm resume` (running ones go on)."""
    from swarmd.operate import Operator

    changed = Operator(get_home(home)).pause()
    dump_json({"paused": True, "changed": changed}) if as_json else click.echo(
        "dispatch paused: no new attempt starts until `swarm resume`" if changed else "dispatch was already paused")


@main.command()
@home_option
@json_option
def resume(home: str | None, as_json: bool) -> None:
    """Resume dispatch after `swarm pause`."""
    from swarmd.operate import Operator

    changed = Operator(get_home(home)).resume()
    dump_json({"paused": False, "changed": changed}) if as_json else click.echo(
        "dispatch resumed" if changed else "dispatch was not paused")

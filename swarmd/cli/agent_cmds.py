"""Commands for the agent in a worker's pane: answer its dialog."""

import click

from swarmd.cli import main
from swarmd.cli.common import dump_json, get_home, home_option, json_option


@main.command()
@click.argument("worker")
@click.argument("choice")
@home_option
@click.option("--destructive", is_flag=True,
              help="Answer even a dialog that would confirm something destructive (rm, delete, force push...).")
@json_option
def answer(worker: str, choice: str, home: str | None, destructive: bool, as_json: bool) -> None:
    """Pick CHOICE (an option's label, the start of one, or its number) in the dialog WORKER's agent shows."""
    from swarmd.operate import Operator

    label = Operator(get_home(home)).answer(worker, choice, destructive=destructive)
    dump_json({"worker": worker, "answered": label}) if as_json else click.echo(f"answered {worker}: {label}")

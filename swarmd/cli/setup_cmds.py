"""Commands for setting a swarm up and putting it right: plan check, retry, doctor, reference."""

import sys
from dataclasses import asdict
from pathlib import Path

import click

from swarmd.cli import main
from swarmd.cli.common import dump_json, home_option, json_option
from swarmd.home import SwarmHome


def _home_if_any(home: str | None) -> SwarmHome | None:
    """The home named or found upward, if `swarm init` made it; None otherwise (these commands work without)."""
    from swarmd.errors import HomeError

    try:
        found = SwarmHome.at(home)
    except HomeError:
        return None
    return found if found.exists() else None


@main.group()
def plan() -> None:
    """Work with plan files."""


@plan.command("check")
@click.argument("plan_file", metavar="PLAN", type=click.Path(dir_okay=False, path_type=Path))
@home_option
@json_option
def plan_check(plan_file: Path, home: str | None, as_json: bool) -> None:
    """Check a plan as `swarm run` would (keys, blockers, cycles, profiles and their programs), starting nothing.

    Exit 0 if it would load, 2 with each problem on a line of its own."""
    from swarmd.config import Config, load_config
    from swarmd.ledger.log import Ledger
    from swarmd.plans.check import check_plan

    found = _home_if_any(home)
    config = load_config(found.config_file) if found else Config()
    known = Ledger(found, durable=config.durable).board() if found else {}
    result = check_plan(plan_file, config, known)
    if as_json:
        dump_json({**asdict(result), "ok": result.ok})
    elif result.ok:
        click.echo(f"{plan_file}: ok ({result.tasks} tasks)")
    for problem in [] if as_json else result.problems:
        click.echo(f"swarm: error: {problem}", err=True)
    sys.exit(0 if result.ok else 2)


@main.command()
@click.argument("task_ids", metavar="TASK...", nargs=-1, required=True)
@home_option
@json_option
def retry(task_ids: tuple[str, ...], home: str | None, as_json: bool) -> None:
    """Give blocked or failed tasks a fresh budget of attempts (a held task is released); all or none."""
    from swarmd.cli.ledger_cmds import _me, open_ledger

    events = open_ledger(home).retry(list(task_ids), _me())
    if as_json:
        dump_json({"retried": [e.task for e in events]})
        return
    for event in events:
        click.echo(f"{event.task}: open again with a fresh budget of attempts")


@main.command()
@home_option
@json_option
def doctor(home: str | None, as_json: bool) -> None:
    """Check this machine for a swarm: tmux, the socket path, inotify limits, each profile's program and its
    version, the home's permissions and free disk. Exit 1 if any check fails."""
    from swarmd.config import Config, load_config
    from swarmd.cli.doctor import FAIL, run_doctor

    found = _home_if_any(home)
    findings = run_doctor(found, load_config(found.config_file) if found else Config())
    if as_json:
        dump_json([asdict(f) for f in findings])
    else:
        for f in findings:
            click.echo(f"{f.status:<4}  {f.check:<28} {f.detail}")
    sys.exit(1 if any(f.status == FAIL for f in findings) else 0)


@main.command()
def reference() -> None:
    """Print the reference of plan keys, check kinds and swarm.toml settings (docs/reference.md)."""
    from swarmd.cli.reference import render_reference

    click.echo(render_reference(), nl=False)

"""Commands for git isolation and integration: diff, queue, land, reserve, release, reservations."""

import time

import click

from protocol.text import inert
from swarmd.cli import main
from swarmd.cli.common import dump_json, get_home, home_option, json_option


def _agent_option(f):  # type: ignore[no-untyped-def]
    return click.option("--agent", envvar="SWARM_AGENT", required=True,
                        help="Who reserves (default: $SWARM_AGENT, set in every worker).")(f)


@main.command()
@click.argument("paths", nargs=-1, required=True)
@_agent_option
@click.option("--shared", is_flag=True, help="A shared reservation (others may hold shared ones too).")
@click.option("--ttl", type=float, default=3600.0, show_default=True, help="Seconds the reservation lasts.")
@home_option
@json_option
def reserve(paths: tuple[str, ...], agent: str, shared: bool, ttl: float, home: str | None, as_json: bool) -> None:
    """Reserve PATHS (files, `dir/`, globs) for an agent: advisory; an overlap is granted and reported to both."""
    from swarmd.git.reservations import Reservations

    granted, conflicts = Reservations(get_home(home)).reserve(agent, paths, exclusive=not shared, ttl=ttl)
    if as_json:
        dump_json({"granted": granted, "conflicts": conflicts})
        return
    click.echo(inert(f"reserved {', '.join(g.path for g in granted)} for {agent} "
                     f"({'shared' if shared else 'exclusive'}, {ttl:g} s)"))
    for c in conflicts:
        click.echo(inert(f"conflict: {c.requested} overlaps {c.holder}'s {'exclusive' if c.exclusive else 'shared'} "
                         f"reservation of {c.held}"), err=True)


@main.command()
@click.argument("paths", nargs=-1)
@_agent_option
@home_option
@json_option
def release(paths: tuple[str, ...], agent: str, home: str | None, as_json: bool) -> None:
    """Release an agent's reservations of PATHS (all of them when none are named)."""
    from swarmd.git.reservations import Reservations

    count = Reservations(get_home(home)).release(agent, paths or None)
    dump_json({"released": count}) if as_json else click.echo(f"released {count} reservation(s) of {agent}")


@main.command()
@click.option("--agent", default=None, help="Only this agent's reservations.")
@home_option
@json_option
def reservations(agent: str | None, home: str | None, as_json: bool) -> None:
    """List the live file reservations."""
    from swarmd.git.reservations import Reservations

    held = Reservations(get_home(home)).list(agent)
    if as_json:
        dump_json(held)
        return
    if not held:
        click.echo("no reservations")
    now = time.time()
    for r in held:
        extra = f"  conflicts: {', '.join(r.conflicts)}" if r.conflicts else ""
        click.echo(inert(f"{r.agent:<12} {'exclusive' if r.exclusive else 'shared':<9} {r.path}  "
                         f"({max(0, r.expires - now):.0f} s left){extra}"))

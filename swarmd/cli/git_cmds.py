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


@main.command()
@click.argument("name")
@click.option("--stat", is_flag=True, help="Only the files changed and how much.")
@home_option
@json_option
def diff(name: str, stat: bool, home: str | None, as_json: bool) -> None:
    """Show the change of an attempt: NAME is a task (its latest attempt) or a worker."""
    from swarmd.git.views import attempt_diff, find_attempt
    from swarmd.ledger.log import Ledger

    tree = find_attempt(Ledger(get_home(home)), name)
    text = attempt_diff(tree, stat=stat)
    if as_json:
        dump_json({"task": tree.task, "attempt": tree.attempt, "branch": tree.branch, "base": tree.base,
                   "worktree": tree.path, "diff": text})
    else:
        click.echo(text)


@main.command()
@home_option
@json_option
def queue(home: str | None, as_json: bool) -> None:
    """Show the merge queue: attempts waiting to land, and those landed or failed at the merge."""
    from swarmd.git.views import queue_view
    from swarmd.ledger.log import Ledger

    view = queue_view(Ledger(get_home(home)))
    if as_json:
        dump_json(view.as_dict())
        return
    click.echo(f"{len(view.waiting)} waiting, {len(view.landed)} landed, {len(view.failed)} failed at the merge")
    for n, row in enumerate(view.waiting, 1):
        click.echo(inert(f"  {n}. {row['task']} (attempt {row['attempt']}) {row['branch']} -> {row['integration']}"))
    for row in view.failed[-5:]:
        click.echo(inert(f"  failed: {row['task']} (attempt {row['attempt']}): {row['reason']}"))


@main.command()
@click.option("--into", default=None, help="The branch to fast-forward (default: the branch checked out in the "
                                           "repository).")
@click.option("--integration", default=None, help="The integration branch (default: the latest one used).")
@home_option
@json_option
def land(into: str | None, integration: str | None, home: str | None, as_json: bool) -> None:
    """Fast-forward a branch of yours to the integration branch; refuses unless it is a fast-forward."""
    from pathlib import Path

    from swarmd.errors import SwarmError
    from swarmd.git.repo import Git
    from swarmd.git.views import attempts, land as land_branch
    from swarmd.ledger.log import Ledger

    known = attempts(Ledger(get_home(home)))
    if not known:
        raise SwarmError("nothing to land: no task of this swarm ran in a git worktree")
    latest = known[-1][0]
    repo = Path(latest.repo)
    target = into or Git(repo).run("symbolic-ref", "--short", "-q", "HEAD")
    moved = land_branch(repo, integration or latest.integration, target)
    if as_json:
        dump_json(moved)
    else:
        click.echo(f"{moved['branch']}: {moved['old'][:12]} -> {moved['new'][:12]} (fast-forward)")

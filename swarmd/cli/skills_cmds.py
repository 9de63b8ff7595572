"""`swarm skills`: the hub of skills mirrored into every worker (add, list, remove)."""

from dataclasses import asdict
from pathlib import Path

import click

from protocol.text import inert
from swarmd.cli import main
from swarmd.cli.common import dump_json, get_home, home_option, json_option


@main.group()
def skills() -> None:
    """Skills (folders with a SKILL.md) kept in the home and mirrored into every worker's agent."""


def _announce(home: str | None, summary: str, **detail: object) -> None:
    from protocol.event import EventType
    from swarmd.cli.ledger_cmds import open_ledger

    open_ledger(home).append(EventType.CUSTOM, "operator", summary=summary, **detail)


@skills.command("add")
@click.argument("path", required=False, type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--name", default=None, help="The skill's name (default: the folder's); alone, a new stub skill.")
@home_option
@json_option
def skills_add(path: Path | None, name: str | None, home: str | None, as_json: bool) -> None:
    """Add (or replace) a skill; running workers get it within a moment."""
    from swarmd.skills import SkillHub

    skill = SkillHub(get_home(home)).add(path, name)
    _announce(home, f"skill {skill.name} added to the hub", skill=skill.name)
    dump_json(asdict(skill)) if as_json else click.echo(skill.name)


@skills.command("list")
@home_option
@json_option
def skills_list(home: str | None, as_json: bool) -> None:
    """The skills in the hub."""
    from swarmd.skills import SkillHub

    found = SkillHub(get_home(home)).skills()
    if as_json:
        dump_json([asdict(s) for s in found])
        return
    for skill in found:
        click.echo(inert(f"{skill.name:<24} {skill.files:>4} files  {skill.description}"))
    if not found:
        click.echo("no skills: add one with `swarm skills add PATH`")


@skills.command("remove")
@click.argument("name")
@home_option
@json_option
def skills_remove(name: str, home: str | None, as_json: bool) -> None:
    """Remove a skill from the hub (and so from every worker)."""
    from swarmd.skills import SkillHub

    SkillHub(get_home(home)).remove(name)
    _announce(home, f"skill {name} removed from the hub", skill=name)
    dump_json({"removed": name}) if as_json else click.echo(f"removed {name}")

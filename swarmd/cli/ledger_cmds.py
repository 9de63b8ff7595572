"""Commands over the ledger: init, task, board, feed, stats, registry."""

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import click
from pydantic import TypeAdapter

from protocol.agent import AgentStatus, RegistryEntry
from protocol.event import Event, EventType
from protocol.task import NoteKind, Task, TaskStatus
from protocol.text import inert
from swarmd.cli import main
from swarmd.cli.common import dump_json, get_home, home_option, json_option
from swarmd.config import load_config
from swarmd.entry import LEDGER_FILES, read_config_bytes, remember_checked_config
from swarmd.errors import HomeError
from swarmd.home import SwarmHome, home_to_create, init_home
from swarmd.ledger.log import Ledger, validated
from swarmd.ledger.registry import LIVE_STATUSES
from swarmd.ledger.waiting import waiting_on

EVENT_TYPES = click.Choice([t.value for t in EventType])
TASK_STATUSES = click.Choice([s.value for s in TaskStatus])
AGENT_STATUSES = click.Choice([s.value for s in AgentStatus])
_TASK_LIST = TypeAdapter(list[Task])


def open_ledger(home: str | None) -> Ledger:
    swarm_home = get_home(home)
    _refuse_symlinked_ledger(swarm_home.ledger_dir)
    before = read_config_bytes(swarm_home)
    config = load_config(swarm_home.config_file)
    ledger = Ledger(swarm_home, durable=config.durable, stale_after=config.stale_after)
    remember_checked_config(swarm_home, before)  # `swarm board --json` may now answer without the models
    return ledger


def _refuse_symlinked_ledger(ledger_dir: Path) -> None:
    """A ledger file that is a symlink would be read (and snapshots replaced) through it: refuse the home."""
    for name in LEDGER_FILES:
        if (ledger_dir / name).is_symlink():
            raise HomeError(f"{ledger_dir / name} is a symbolic link: refusing to use it; "
                            "replace it with the real file (or remove it) and try again")


def _me() -> str:
    return os.environ.get("SWARM_AGENT") or "operator"


def _agent_option(f: Any) -> Any:
    return click.option("--agent", default=None, help="Who is acting (default: $SWARM_AGENT, else operator).")(f)


def _print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A rich table whose cells are plain Text: no markup is interpreted and control characters are escaped."""
    from rich.table import Table
    from rich.text import Text

    from swarmd.cli.view import terminal

    table = Table(title=Text(inert(title)), title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(Text(inert("" if cell is None else cell)) for cell in row))
    terminal().print(table)


@main.command()
@home_option
@click.option("--project", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="The directory the swarm works on (default: this one).")
@json_option
def init(home: str | None, project: Path | None, as_json: bool) -> None:
    """Create a swarm home here (or at --home / $SWARM_HOME; safe to run again) and print its path."""
    swarm_home = SwarmHome(home_to_create(home))
    created = init_home(swarm_home, project=(project or Path.cwd()).absolute())
    before = read_config_bytes(swarm_home)
    load_config(swarm_home.config_file)
    remember_checked_config(swarm_home, before)
    if as_json:
        dump_json({"home": str(swarm_home.root), "created": created})
    else:
        click.echo(str(swarm_home.root))


# -- tasks -------------------------------------------------------------------------------------------------------

@main.group()
def task() -> None:
    """Add, change, annotate and show tasks."""


@task.command("add")
@click.argument("title")
@click.option("--description", default="", help="What to do, in full.")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@click.option("--blocked-by", "blocked_by", multiple=True, help="A task that must be done first (repeatable).")
@click.option("--priority", type=int, default=0, show_default=True, help="Lower numbers run first.")
@click.option("--id", "task_id", default=None, help="The task id (default: t-<n>).")
@_agent_option
@home_option
@json_option
def task_add(title: str, description: str, tags: tuple[str, ...], blocked_by: tuple[str, ...], priority: int,
             task_id: str | None, agent: str | None, home: str | None, as_json: bool) -> None:
    """Add a task to the board and print its id."""
    fields = {"title": title, "description": description, "tags": list(tags), "blocked_by": list(blocked_by),
              "priority": priority}
    event = open_ledger(home).add_new_task(fields, agent or _me(), task_id)
    if as_json:
        dump_json(event.detail["task"])
    else:
        click.echo(event.task)


@task.command("update")
@click.argument("task_id")
@click.option("--status", type=TASK_STATUSES, default=None, help="A new status (checked against the table).")
@click.option("--assignee", default=None, help="Who works on it (empty to clear).")
@click.option("--title", default=None)
@click.option("--description", default=None)
@click.option("--priority", type=int, default=None)
@click.option("--tag", "tags", multiple=True, help="Replace the tags (repeatable).")
@click.option("--blocked-by", "blocked_by", multiple=True, help="Replace the blockers (repeatable).")
@click.option("--summary", default="", help="A line for the feed about the status change.")
@_agent_option
@home_option
@json_option
def task_update(task_id: str, status: str | None, assignee: str | None, title: str | None,
                description: str | None, priority: int | None, tags: tuple[str, ...], blocked_by: tuple[str, ...],
                summary: str, agent: str | None, home: str | None, as_json: bool) -> None:
    """Change a task's status or fields."""
    led = open_ledger(home)
    fields: dict[str, Any] = {k: v for k, v in (("title", title), ("description", description),
                                                 ("priority", priority)) if v is not None}
    if assignee is not None:
        fields["assignee"] = assignee or None
    if tags:
        fields["tags"] = list(tags)
    if blocked_by:
        fields["blocked_by"] = list(blocked_by)
    if not fields and status is None:
        raise click.UsageError("nothing to change: give --status or a field such as --title")
    events = []
    if fields:
        events.append(led.update_task(task_id, agent or _me(), **fields))
    if status is not None:
        events.append(led.transition(task_id, TaskStatus(status), agent or _me(), summary=summary))
    if as_json:
        dump_json(led.task(task_id))
    else:
        click.echo(inert(events[-1].summary))


@task.command("note")
@click.argument("task_id")
@click.argument("text")
@click.option("--kind", type=click.Choice([k.value for k in NoteKind]), default=NoteKind.UPDATE.value,
              show_default=True)
@_agent_option
@home_option
@json_option
def task_note(task_id: str, text: str, kind: str, agent: str | None, home: str | None, as_json: bool) -> None:
    """Add a note (finding, blocker, question, update) to a task."""
    event = open_ledger(home).add_note(task_id, NoteKind(kind), text, agent or _me())
    if as_json:
        dump_json(event)
    else:
        click.echo(f"{task_id}: {kind} noted (seq {event.seq})")


@task.command("show")
@click.argument("task_id")
@home_option
@json_option
def task_show(task_id: str, home: str | None, as_json: bool) -> None:
    """Show one task with its notes and attempts."""
    found = open_ledger(home).task(task_id)
    if as_json:
        dump_json(found)
        return
    for label, value in (("id", found.id), ("title", found.title), ("status", found.status.value),
                         ("assignee", found.assignee or "-"), ("priority", found.priority),
                         ("tags", ", ".join(found.tags) or "-"), ("blocked by", ", ".join(found.blocked_by) or "-"),
                         ("updated", f"{found.updated:%Y-%m-%d %H:%M:%S}")):
        click.echo(f"{label:<11} {inert(value)}")
    if found.description:  # shown as written, line by line; other control characters stay inert
        click.echo(f"\n{inert(found.description, keep_newlines=True)}")
    for attempt in found.attempts:
        reason = f": {attempt.reason}" if attempt.reason else ""
        click.echo(inert(f"attempt {attempt.number} by {attempt.worker or '-'}: {attempt.outcome.value}{reason}",
                         keep_newlines=True))
    for note in found.notes:
        click.echo(inert(f"[{note.kind.value}] {note.author} {note.ts:%H:%M:%S}: {note.text}", keep_newlines=True))


@main.command()
@click.option("--status", "statuses", type=TASK_STATUSES, multiple=True, help="Only this status (repeatable).")
@click.option("--tag", default=None, help="Only tasks with this tag.")
@home_option
@json_option
def board(statuses: tuple[str, ...], tag: str | None, home: str | None, as_json: bool) -> None:
    """The tasks, grouped by status."""
    tasks = [t for t in open_ledger(home).board().values()
             if (not statuses or t.status in statuses) and (tag is None or tag in t.tags)]
    if as_json:  # pydantic-core's encoder: the stdlib's took seconds on a board of 1,000 tasks with many notes
        click.echo(_TASK_LIST.dump_json(tasks, indent=2))
        return
    if not tasks:
        click.echo("no tasks")
        return
    for status in TaskStatus:
        group = sorted((t for t in tasks if t.status == status), key=lambda t: (t.priority, t.id))
        waits = {t.id: waiting_on(t.status, ((n.author, n.kind.value, n.text) for n in t.notes)) for t in group}
        extra = ("waiting on",) if any(waits.values()) else ()  # a note the supervisor made: labels none offers
        if group:
            _print_table(f"{status.value} ({len(group)})",
                         ("id", "title", "assignee", "priority", "tags", "blocked by", *extra),
                         ((t.id, t.title, t.assignee or "", t.priority, ", ".join(t.tags), ", ".join(t.blocked_by),
                           *((waits[t.id] or "",) if extra else ())) for t in group))


# -- the feed ----------------------------------------------------------------------------------------------------

def _print_event(event: Event, as_json: bool) -> None:
    if as_json:
        click.echo(event.model_dump_json())
    else:
        task_part = f" [{event.task}]" if event.task else ""
        line = f"{event.seq:>6} {event.ts:%H:%M:%S} {event.agent} {event.type.value}{task_part} {event.summary}"
        click.echo(inert(line))


@main.group(invoke_without_command=True)
@click.option("--follow", "-f", is_flag=True, help="Keep printing events as they are appended (Ctrl-C to stop).")
@click.option("--type", "types", type=EVENT_TYPES, multiple=True, help="Only this event type (repeatable).")
@click.option("--agent", default=None, help="Only events by this agent.")
@click.option("--task", "task_id", default=None, help="Only events about this task.")
@click.option("--limit", "-n", type=click.IntRange(min=0), default=None,
              help="The last N events (with --follow: default 10).")
@home_option
@json_option
@click.pass_context
def feed(ctx: click.Context, follow: bool, types: tuple[str, ...], agent: str | None, task_id: str | None,
         limit: int | None, home: str | None, as_json: bool) -> None:
    """The event feed, oldest first (--json: one event per line)."""
    if ctx.invoked_subcommand is not None:
        return
    led = open_ledger(home)
    filters: dict[str, Any] = {"types": list(types) or None, "agent": agent, "task": task_id}
    if follow and limit is None:
        limit = 10
    unfiltered = not (types or agent or task_id)
    since = max(0, led.last_seq() - limit) if limit is not None and unfiltered else 0
    shown = led.events(since_seq=since, **filters)
    shown = shown[len(shown) - limit:] if limit is not None and len(shown) > limit else shown
    try:  # Ctrl-C is how a person ends it, wherever it lands (the last events, or while following)
        for event in shown:
            _print_event(event, as_json)
        if follow:
            after = shown[-1].seq if shown else led.last_seq()
            for event in led.follow(since_seq=after, **filters):
                _print_event(event, as_json)
    except KeyboardInterrupt:
        ctx.exit(0)


@feed.command("publish")
@click.argument("summary")
@click.option("--agent", required=True, help="Who reports it.")
@click.option("--type", "event_type", type=EVENT_TYPES, required=True)
@click.option("--task", "task_id", default=None, help="The task it is about.")
@home_option
@json_option
def feed_publish(summary: str, agent: str, event_type: str, task_id: str | None, home: str | None,
                 as_json: bool) -> None:
    """Append one event to the feed and print its seq."""
    event = open_ledger(home).append(EventType(event_type), agent, task_id, summary)
    if as_json:
        dump_json(event)
    else:
        click.echo(event.seq)


@main.command()
@home_option
@json_option
def stats(home: str | None, as_json: bool) -> None:
    """Events by type and by agent, tasks and agents by status, the agents' usage by task and in all."""
    figures = open_ledger(home).stats()
    if as_json:
        dump_json(figures)
        return
    for key, title in (("events_by_type", f"events by type ({figures['events']})"),
                       ("events_by_agent", "events by agent"), ("tasks_by_status", "tasks by status"),
                       ("agents_by_status", "agents by status")):
        counts = figures[key]
        _print_table(title, ("", "count"), sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    if figures["usage_total"]:
        rows = [(task or "-", *_usage_cells(usage)) for task, usage in sorted(figures["usage_by_task"].items())]
        _print_table("agents' usage by task", ("task", "input tokens", "output tokens", "cost (USD)"),
                     [*rows, ("all", *_usage_cells(figures["usage_total"]))])


def _usage_cells(usage: dict[str, float]) -> tuple[str, str, str]:
    cost = usage.get("cost_usd")
    return (f"{int(usage.get('input_tokens', 0))}", f"{int(usage.get('output_tokens', 0))}",
            "-" if cost is None else f"{cost:.4f}")


# -- the registry ------------------------------------------------------------------------------------------------

@main.group()
def registry() -> None:
    """The agents known to the swarm."""


def _print_agents(agents: list[RegistryEntry], as_json: bool) -> None:
    if as_json:
        dump_json(agents)
        return
    _print_table(f"agents ({len(agents)})", ("name", "role", "status", "task", "session", "pid", "last heartbeat"),
                 ((a.name, a.role, a.status.value, a.task or "", a.session or "", a.pid or "",
                   f"{a.last_heartbeat:%Y-%m-%d %H:%M:%S}" if a.last_heartbeat else "")
                  for a in sorted(agents, key=lambda a: a.name)))


@registry.command("list")
@click.option("--role", default=None)
@click.option("--status", type=AGENT_STATUSES, default=None)
@home_option
@json_option
def registry_list(role: str | None, status: str | None, home: str | None, as_json: bool) -> None:
    """Every registered agent, with its status (stale when its heartbeat is old)."""
    agents = [a for a in open_ledger(home).registry().values()
              if (role is None or a.role == role) and (status is None or a.status == status)]
    _print_agents(agents, as_json)


@registry.command("discover")
@click.option("--role", required=True)
@home_option
@json_option
def registry_discover(role: str, home: str | None, as_json: bool) -> None:
    """The live agents of a role (not stale, stopped or dead), one name a line."""
    agents = sorted((a for a in open_ledger(home).registry().values() if a.role == role and a.status in LIVE_STATUSES),
                    key=lambda a: a.name)
    if as_json:
        dump_json(agents)
    else:
        for entry in agents:
            click.echo(entry.name)


@registry.command("register")
@click.argument("name")
@click.option("--role", default="worker", show_default=True)
@_agent_option
@home_option
@json_option
def registry_register(name: str, role: str, agent: str | None, home: str | None, as_json: bool) -> None:
    """Register an agent by name."""
    led = open_ledger(home)
    entry = validated(RegistryEntry, {"name": name, "role": role})
    led.register_agent(entry, agent or _me())
    led.heartbeat(name)
    if as_json:
        dump_json(entry)
    else:
        click.echo(name)


@registry.command("heartbeat")
@click.argument("name")
@home_option
def registry_heartbeat(name: str, home: str | None) -> None:
    """Record a sign of life for an agent (not an event: a file's mtime)."""
    open_ledger(home).heartbeat(name)

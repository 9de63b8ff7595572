"""The `agentmail` command: a thin layer over PostOffice and Mailbox that parses, calls and prints."""

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from agentmail.clibase import OneLineGroup
from agentmail.errors import MailError
from agentmail.locate import NoHome, locate_home
from agentmail.mailbox import Delivered
from agentmail.postoffice import PostOffice
from protocol import BODY_MODELS, Message, MessageType, ProtocolError, make_message
from protocol.messages import Body, field_adapter
from protocol.text import decode_text, inert, non_utf8

F = TypeVar("F", bound=Callable[..., Any])
TYPES = click.Choice([t.value for t in MessageType], case_sensitive=False)
MAX_BODY_INPUT = 4 << 20  # bytes read from --body-file or stdin; the post office's size limit applies after


class _Group(OneLineGroup):
    """Turns every refusal into one line on stderr and exit status 2: no traceback and no usage block for a
    user's mistake (the line says where to find the command's help)."""

    prog = "agentmail"

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (MailError, ProtocolError, OSError) as exc:
            click.echo(f"agentmail: error: {inert(str(exc))}", err=True)
            sys.exit(2)


def common(func: F) -> F:
    """The options every command takes: --home and --json."""
    func = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(func)
    return click.option("--home", type=click.Path(path_type=Path), default=None,
                        help="The swarm (or mail) home (default: $SWARM_HOME, else the nearest .swarm/ "
                             "in this directory or a parent).")(func)


def _office(home: Path | None, *, must_exist: bool = False) -> PostOffice:
    """The post office of the home named or found upward; with `must_exist`, a home that is not there is refused
    (a message sent into a home made on the spot would be read by nobody)."""
    root = locate_home(home)
    if must_exist and not root.is_dir():
        raise NoHome(f"no swarm home at {root}: run `swarm init` (or give the right --home)")
    return PostOffice(root)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="swarmd", prog_name="agentmail")
def cli() -> None:
    """Agent Mail: typed messages between agents, delivered as files into per-agent mailboxes."""


def _show(message: Message, as_json: bool) -> None:
    if as_json:
        click.echo(message.to_json())
    else:
        click.echo(_describe(message))
        click.echo(json.dumps(message.body.model_dump(mode="json", exclude_none=True), indent=2))


def _describe(message: Message) -> str:
    task = f"[{message.task}] " if message.task else ""
    return f"{task}{message.type.value} {message.id} from {message.sender} to {', '.join(message.to)}"


def _summary(message: Message) -> str:
    body = message.body.model_dump(exclude_none=True, exclude={"task"})
    text = inert(next((str(v) for v in body.values() if isinstance(v, str) and v), ""))
    return text if len(text) <= 50 else text[:47] + "..."


def _parse_field(field: str, model: type[Body]) -> tuple[str, Any]:
    """`key=value` with the value typed by the body field it fills: a text field keeps the text as written
    (`step=3` is "3"; a JSON string literal such as `"a b"` is unquoted), any other field (a list, number,
    bool, enum or time) takes the value as JSON, else as text that pydantic converts (`tests=PASS`).
    A field the model does not have keeps a JSON value as parsed, else the text."""
    key, sep, raw = field.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{field!r} is not key=value", param_hint="--field")
    if key not in model.model_fields:
        return key, _json_or_text(raw)
    adapter = field_adapter(model, key)
    try:
        candidates = [json.loads(raw), raw]
    except (json.JSONDecodeError, RecursionError):
        candidates = [raw]
    for value in candidates:
        if non_utf8(value) is not None:
            return key, value  # refused by the message's own validation, which names the field
        try:
            return key, adapter.validate_python(value)
        except ValidationError:
            continue
    return key, raw  # the message's own validation says what is wrong with it, naming the field


def _json_or_text(raw: str) -> Any:
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        return raw
    return value if isinstance(value, (str, int, float, bool, list)) or value is None else raw


def _body_text(body_file: Path | None, body_json: str | None) -> str | None:
    """The body's JSON text from a file, stdin or the option itself: bounded, refused unless UTF-8, and
    decoded as every text file is (a BOM dropped, CRLF made LF)."""
    if body_file is None and body_json != "-":
        return body_json
    if body_file is not None:
        with body_file.open("rb") as handle:
            raw = handle.read(MAX_BODY_INPUT + 1)
    else:
        raw = sys.stdin.buffer.read(MAX_BODY_INPUT + 1)
    if len(raw) > MAX_BODY_INPUT:
        raise click.BadParameter(f"body is over {MAX_BODY_INPUT} bytes: put large content in a file and send its path",
                                 param_hint="--body-file/--body-json")
    try:
        return decode_text(raw)
    except UnicodeDecodeError:
        raise click.BadParameter("body is not UTF-8 text", param_hint="--body-file/--body-json") from None


def _body(model: type[Body], fields: tuple[str, ...], body_file: Path | None, body_json: str | None) -> dict[str, Any]:
    text = _body_text(body_file, body_json)
    body: dict[str, Any] = {}
    if text:
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"body is not JSON: {exc}", param_hint="--body-file/--body-json") from None
        except RecursionError:
            raise click.BadParameter("body is nested too deeply", param_hint="--body-file/--body-json") from None
        if not isinstance(body, dict):
            raise click.BadParameter("body must be a JSON object", param_hint="--body-file/--body-json")
    body.update(_parse_field(f, model) for f in fields)
    return body


@cli.command()
@click.option("--from", "sender", required=True, help="The sending agent.")
@click.option("--to", "to", multiple=True, help="A recipient agent (repeatable).")
@click.option("--role", "roles", multiple=True, help="Broadcast to every agent of this role (repeatable).")
@click.option("--type", "kind", required=True, type=TYPES, help="The message type.")
@click.option("--task", help="The task this is about: sets the thread and body.task.")
@click.option("--field", "fields", multiple=True,
              help="A body field key=value, typed by the field: text as written, lists and numbers as JSON.")
@click.option("--body-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Body as a JSON file.")
@click.option("--body-json", help="Body as JSON text, or - to read it from stdin.")
@click.option("--ack-required", is_flag=True, help="Ask the recipient to acknowledge.")
@click.option("--reply-to", help="The id of the message this answers.")
@common
def send(sender: str, to: tuple[str, ...], roles: tuple[str, ...], kind: str, task: str | None,
         fields: tuple[str, ...], body_file: Path | None, body_json: str | None, ack_required: bool,
         reply_to: str | None, home: Path | None, as_json: bool) -> None:
    """Send a message; prints its id."""
    recipients = [*to, *(f"role:{r}" for r in roles)]
    if not recipients:
        raise click.UsageError("give at least one --to or --role")
    body = _body(BODY_MODELS[MessageType(kind.upper())], fields, body_file, body_json)
    envelope: dict[str, Any] = {"ack_required": ack_required, "reply_to": reply_to}
    if task:
        body["task"] = task
        envelope["thread"] = task
    message = _office(home, must_exist=True).send(make_message(kind.upper(), sender, recipients, body, **envelope))
    click.echo(message.to_json() if as_json else message.id)


@cli.command()
@click.argument("agent")
@common
def inbox(agent: str, home: Path | None, as_json: bool) -> None:
    """List AGENT's unread messages."""
    unread = _office(home).mailbox(agent).list()
    if as_json:
        click.echo(json.dumps([_delivered_json(d) for d in unread]))
        return
    for d in unread:
        m = d.message
        click.echo(f"{d.seq:>6}  {m.id}  {m.sender:<16} {m.type.value:<14} {m.task or '-':<16} {_summary(m)}")
    if not unread:
        click.echo(f"no unread mail for {agent}")


def _delivered_json(delivered: Delivered) -> dict[str, Any]:
    return {"seq": delivered.seq, "file": delivered.name,
            "message": delivered.message.model_dump(mode="json", by_alias=True, exclude_none=True)}


@cli.command()
@click.argument("agent")
@click.argument("message_id", required=False)
@common
def read(agent: str, message_id: str | None, home: Path | None, as_json: bool) -> None:
    """Claim and print one of AGENT's messages (the oldest unread if no MESSAGE_ID)."""
    delivered = _office(home).mailbox(agent).claim(message_id)
    if delivered is None:
        which = f"message {message_id}" if message_id else "messages"
        click.echo(f"no unread {which} for {agent}", err=True)
        sys.exit(1)
    _show(delivered.message, as_json)


@cli.command()
@click.argument("agent")
@click.argument("message_id")
@common
def ack(agent: str, message_id: str, home: Path | None, as_json: bool) -> None:
    """Acknowledge MESSAGE_ID, a message AGENT has read; the ACK goes to its sender."""
    po = _office(home)
    delivered = po.mailbox(agent).read_claimed(message_id)
    if delivered is None:
        raise MailError(f"{agent} has no read message {message_id}: read it first (agentmail read {agent} {message_id})")
    sent = po.ack(agent, delivered)
    click.echo(sent.to_json() if as_json else sent.id)


@cli.command()
@click.argument("agent")
@click.option("--type", "kinds", multiple=True, type=TYPES, help="Only messages of this type (repeatable).")
@click.option("--task", help="Only messages about this task.")
@click.option("--timeout", type=float, help="Give up after this many seconds (exit 1).")
@common
def wait(agent: str, kinds: tuple[str, ...], task: str | None, timeout: float | None, home: Path | None,
         as_json: bool) -> None:
    """Block until a matching message arrives for AGENT; claim and print it."""
    types = {MessageType(k.upper()) for k in kinds} or None
    delivered = _office(home).mailbox(agent).wait(types=types, task=task, timeout=timeout)
    if delivered is None:
        click.echo(f"no matching message for {agent} within {timeout} s", err=True)
        sys.exit(1)
    _show(delivered.message, as_json)


@cli.command()
@click.argument("agent")
@click.option("--claim", is_flag=True, help="Claim each message as it is printed.")
@click.option("--polling", is_flag=True, help="Poll the directory instead of using file system events.")
@common
def watch(agent: str, claim: bool, polling: bool, home: Path | None, as_json: bool) -> None:
    """Print one JSON line per message for AGENT as they arrive, until interrupted."""
    mailbox = _office(home).mailbox(agent)
    try:
        for delivered in mailbox.watch(claim=claim, polling=polling):
            click.echo(delivered.message.to_json())
    except KeyboardInterrupt:
        pass


@cli.command()
@click.argument("agent")
@common
def bad(agent: str, home: Path | None, as_json: bool) -> None:
    """List AGENT's quarantined files and why each was set aside (unread mail is checked first)."""
    mailbox = _office(home).mailbox(agent)
    mailbox.list()  # sweeps malformed files that no reader has come across yet into bad/
    quarantined = mailbox.bad()
    if as_json:
        click.echo(json.dumps([{"file": name, "reason": reason} for name, reason in quarantined]))
        return
    for name, reason in quarantined:
        click.echo(inert(f"{name}: {reason}"))


@cli.command()
@click.argument("agent")
@click.option("--role", default="worker", show_default=True, help="The agent's role.")
@common
def register(agent: str, role: str, home: Path | None, as_json: bool) -> None:
    """Create AGENT's mailbox and record its role."""
    po = _office(home)
    mailbox = po.register(agent, role)
    path = getattr(mailbox, "path", None)  # a directory on the files; JetStream: the server and subject
    where = str(path) if path else getattr(mailbox, "location", agent)
    click.echo(json.dumps({"agent": agent, "role": role, "path": where}) if as_json else where)


@cli.command()
@click.option("--role", help="Only agents of this role.")
@common
def agents(role: str | None, home: Path | None, as_json: bool) -> None:
    """List the agents that have a mailbox."""
    po = _office(home)
    names = po.agents(role)
    if as_json:
        click.echo(json.dumps([{"agent": n, "role": po.role_of(n)} for n in names]))
        return
    for name in names:
        click.echo(f"{name}\t{po.role_of(name) or '-'}")


@cli.command()
@click.argument("name", required=False)
@common
def schema(name: str | None, home: Path | None, as_json: bool) -> None:
    """Print the JSON Schema of a message type or model (all of them if no NAME)."""
    from protocol.schema import json_schema  # the task, event and registry models: only this command needs them

    click.echo(json.dumps(json_schema(name), indent=2))


@cli.command()
@common
def demo(home: Path | None, as_json: bool) -> None:
    """Run a short mail round trip between a supervisor and a worker process in a throw-away home."""
    from agentmail.demo import run_demo

    run_demo(click.echo)


def main() -> None:
    cli(prog_name="agentmail")

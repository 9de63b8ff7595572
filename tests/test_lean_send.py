"""`agentmail send` without click or pydantic (`agentmail.entry`) writes what the app writes, byte for byte but
the message's own id and time, and leaves everything else to the app, whose errors stay its own."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic_core import to_jsonable_python

from agentmail import entry
from agentmail.cli import cli as app
from conftest import run_cli
from protocol.messages import BODY_MODELS, parse_message
from swarmd.home import SwarmHome, init_home

# Sends that this path takes, one of each message type with plain text fields (and the types' own quirks:
# a JSON string literal unquoted, a number kept as text, a repeated field, an ACK always asked for).
TAKEN = [
    ["--type", "STEER", "--field", "text=steer me"],
    ["--type", "steer", "--task", "t-1", "--field", "text=\"quoted\"", "--json"],
    ["--type", "TASK_ASSIGN", "--task", "t-1", "--field", "title=T", "--field", "description=d\u00e9\u2713"],
    ["--type", "ACCEPTED", "--task", "t-1", "--field=title=3"],
    ["--type", "PROGRESS", "--task", "t-1", "--field", "step=one", "--field", "step=two", "--field", "status=ok"],
    ["--type", "HELP_REQUEST", "--task", "t-1", "--field", "question=why?", "--field", "problem=[1]"],
    ["--type", "HELP_RESPONSE", "--task", "t-1", "--field", "answer=\x1b[31mred", "--reply-to", "01ABC"],
    ["--type", "OFFERING_READY", "--task", "t-1", "--field", "summary=s"],
    ["--type", "DONE", "--task", "t-1", "--field", "commit=abc123", "--ack-required"],
    ["--type", "FAILED", "--task", "t-1", "--field", "reason=null"],
    ["--type", "CHECKPOINT", "--task", "t-1", "--field", "next_steps=more"],
    ["--type", "SPAWN_REQUEST", "--field", "reason=help"],
    ["--type", "SPAWN_ACK", "--field", "request_id=01R"],
    ["--type", "ACK", "--field", "message_id=\"\""],
    ["--type", "SHUTDOWN"],
]
# Sends left to the app: it refuses them (its one-line error stays its own) or needs the models to type them.
LEFT = [
    ["--type", "STEER", "--field", "text="],  # refused: text too short
    ["--type", "STEER", "--field", "text=x", "--to", "nobody"],  # refused: an unknown recipient
    ["--type", "PROGRESS", "--field", "step=x"],  # refused: no task
    ["--type", "PROGRESS", "--task", "bad id", "--field", "step=x"],  # refused: a bad task id
    ["--type", "STEER", "--field", "text=x", "--from", "Bad"],  # refused: a bad sender (and a repeated option)
    ["--type", "BOGUS"],  # refused: no such type
    ["--type", "PROGRESS", "--task", "t-1", "--field", "files=[\"a\"]"],  # a list: the models type it
    ["--type", "STEER", "--field", "text=x", "--field", "extra=1"],  # an extra field: the models keep it
    ["--type", "SHUTDOWN", "--task", "t-1"],  # a task the body has no field for: kept as an extra
    ["--type", "STEER", "--field", "text=x", "--body-json", "{}"],  # a body: the app reads it
    ["--type", "STEER", "--field", "text=x", "--to", "role:supervisor"],  # a role: the app fans it out
]


@pytest.fixture
def home(tmp_path: Path) -> SwarmHome:
    swarm = SwarmHome(tmp_path / ".swarm")
    init_home(swarm)
    return swarm


def _sent(home: SwarmHome) -> list[dict]:
    """The supervisor's unread mail as written, oldest first, and emptied for the next send."""
    new = home.mail_dir / "supervisor" / "new"
    found = []
    for path in sorted(new.iterdir()):
        found.append(json.loads(path.read_bytes()))
        path.unlink()
    return found


def _comparable(message: dict) -> dict:
    """A message without what differs from one send to the next: its id and time."""
    return {**message, "id": "-", "ts": "-"}


def test_the_layouts_are_the_body_models() -> None:
    assert set(entry.BODY_LAYOUTS) == {t.value for t in BODY_MODELS}
    for kind, model in BODY_MODELS.items():
        layout = [(name, entry.REQUIRED if field.is_required()
                   else to_jsonable_python(field.get_default(call_default_factory=True)),
                   ([m.min_length for m in field.metadata] or [0])[0]
                   if field.annotation is str and name != "task" else None)
                  for name, field in model.model_fields.items()]
        assert list(entry.BODY_LAYOUTS[kind]) == layout, kind


@pytest.mark.parametrize("extra", TAKEN, ids=lambda a: a[1])
def test_a_send_it_takes_writes_what_the_app_writes(home: SwarmHome, extra: list[str],
                                                    capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    args = ["send", "--home", str(home.root), "--from", "operator", "--to", "supervisor", *extra]
    assert entry.answer(args)
    printed = capsysbinary.readouterr().out
    [lean] = _sent(home)
    model = CliRunner().invoke(app, args)
    assert model.exit_code == 0, model.output
    [written] = _sent(home)
    assert _comparable(lean) == _comparable(written)
    assert list(lean) == list(written) and list(lean["body"]) == list(written["body"])  # the same order
    if "--json" in extra:
        assert json.loads(printed) == lean and _comparable(json.loads(model.stdout)) == _comparable(written)
    else:
        assert printed.decode().strip() == lean["id"]
    for message in (lean, written):  # the models read it as they read every message, and would write it so
        assert parse_message(message).to_json() == json.dumps(message, ensure_ascii=False, separators=(",", ":"))


@pytest.mark.parametrize("extra", LEFT, ids=lambda a: " ".join(a[1:4]))
def test_what_it_cannot_vouch_for_goes_to_the_app(home: SwarmHome, extra: list[str]) -> None:
    args = ["send", "--home", str(home.root), "--from", "operator", "--to", "supervisor", *extra]
    assert not entry.answer(args)
    assert _sent(home) == []


@pytest.mark.parametrize("args", [["inbox", "operator"], ["send"], ["send", "--help"], ["send", "--to"]])
def test_other_command_lines_go_to_the_app(args: list[str]) -> None:
    assert entry.parse(args) is None


def test_bad_input_gets_the_apps_one_line_error(home: SwarmHome) -> None:
    done = run_cli("agentmail", "send", "--home", str(home.root), "--from", "operator", "--to", "supervisor",
                   "--type", "STEER", "--field", "text=")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("agentmail: error: ") and "text" in done.stderr
    assert len(done.stderr.splitlines()) == 1

"""The `agentmail` command as a user runs it: real processes, exit codes, one-line errors."""

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner

from agentmail import PostOffice
from agentmail.cli import cli
from conftest import run_cli
from protocol import MessageType, make_message


def mail(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("agentmail", *args, env={"SWARM_HOME": str(home)}, stdin=stdin)


def assert_refused(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("agentmail: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.fixture
def home(home_dir: Path) -> Path:
    po = PostOffice(home_dir)
    po.register("sup", role="supervisor")
    po.register("w1")
    return home_dir


def test_send_inbox_read_ack_round_trip(home: Path) -> None:
    sent = mail(home, "send", "--from", "sup", "--to", "w1", "--type", "progress", "--task", "t-1",
                "--field", 'files=["a.py","b.py"]', "--field", "context_pct=40", "--field", "step=writing tests",
                "--ack-required", "--json")
    assert sent.returncode == 0, sent.stderr
    message = json.loads(sent.stdout)
    assert message["thread"] == "t-1" and message["ack_required"] is True
    assert message["body"] == {"task": "t-1", "step": "writing tests", "status": "", "context_pct": 40.0,
                               "files": ["a.py", "b.py"]}
    inbox = mail(home, "inbox", "w1")
    assert message["id"] in inbox.stdout and "writing tests" in inbox.stdout
    read = mail(home, "read", "w1", "--json")
    assert read.returncode == 0 and json.loads(read.stdout)["id"] == message["id"]
    ack = mail(home, "ack", "w1", message["id"])
    assert ack.returncode == 0, ack.stderr
    acks = json.loads(mail(home, "inbox", "sup", "--json").stdout)
    assert [(a["message"]["type"], a["message"]["body"]["message_id"]) for a in acks] == [("ACK", message["id"])]
    nothing = mail(home, "read", "w1")
    assert nothing.returncode == 1 and "no unread messages for w1" in nothing.stderr


def test_body_from_stdin_role_broadcast_and_agents(home: Path) -> None:
    PostOffice(home).register("w2")
    sent = mail(home, "send", "--from", "sup", "--role", "worker", "--type", "STEER", "--body-json", "-",
                stdin='{"text": "stop and commit"}')
    assert sent.returncode == 0, sent.stderr
    for agent in ("w1", "w2"):
        assert sent.stdout.strip() in mail(home, "inbox", agent).stdout
    agents = json.loads(mail(home, "agents", "--json").stdout)
    assert agents == [{"agent": "sup", "role": "supervisor"}, {"agent": "w1", "role": "worker"},
                      {"agent": "w2", "role": "worker"}]


def test_wait_times_out_with_exit_1_and_claims_when_mail_is_there(home: Path) -> None:
    timed_out = mail(home, "wait", "w1", "--timeout", "0.2")
    assert timed_out.returncode == 1 and "no matching message" in timed_out.stderr
    PostOffice(home).send(make_message(MessageType.DONE, "w1", "sup", {"task": "t-1"}))
    got = mail(home, "wait", "sup", "--type", "DONE", "--task", "t-1", "--timeout", "10", "--json")
    assert got.returncode == 0 and json.loads(got.stdout)["type"] == "DONE"
    assert PostOffice(home).mailbox("sup").list() == []


def test_watch_streams_json_lines_and_exits_quietly_on_ctrl_c(home: Path) -> None:
    first = PostOffice(home).send(make_message(MessageType.STEER, "sup", "w1", {"text": "one"}))
    exe = Path(sys.executable).parent / "agentmail"
    proc = subprocess.Popen([str(exe), "watch", "w1", "--claim"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "SWARM_HOME": str(home)})
    try:
        assert json.loads(proc.stdout.readline())["id"] == first.id  # type: ignore[union-attr]
        second = PostOffice(home).send(make_message(MessageType.STEER, "sup", "w1", {"text": "two"}))
        assert json.loads(proc.stdout.readline())["id"] == second.id  # type: ignore[union-attr]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert proc.stderr.read() == ""  # type: ignore[union-attr]
    finally:
        proc.kill()
        proc.wait()


def test_bad_lists_quarantined_files(home: Path) -> None:
    (home / "mail" / "w1" / "new" / "000000000009-JUNK.json").write_text("{")
    listed = mail(home, "bad", "w1")
    assert listed.returncode == 0 and listed.stdout.startswith("000000000009-JUNK.json: invalid message")


def _refusals(home: Path, tmp_path: Path) -> list[tuple[list[str], tuple[str, ...]]]:
    (home / "mail" / "evil").symlink_to(tmp_path)
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"text": "x" * (1 << 20)}))
    send = ["send", "--from", "sup", "--type", "STEER", "--field", "text=hi", "--to"]
    cases: list[tuple[list[str], tuple[str, ...]]] = [
        ([*send, name], ("invalid agent name",)) for name in ("..", "a/b", "", "a" * 65, "Upper")
    ]
    cases += [(["inbox", name], ("invalid agent name",)) for name in ("..", "a/b")]
    cases += [
        (["register", "Upper"], ("invalid agent name",)),
        ([*send, "evil"], ("symlink",)),
        (["inbox", "evil"], ("symlink",)),
        (["send", "--from", "sup", "--to", "w1", "--type", "STEER"], ("body.text",)),
        (["send", "--from", "sup", "--to", "w1", "--type", "STEER", "--body-file", str(big)], ("over the limit",)),
        (["read", "w1", "../x"], ("invalid message id",)),
        (["ack", "w1", "NOSUCH"], ("read it first",)),
        (["schema", "nonsense"], ("unknown schema",)),
    ]
    return cases


def test_every_refusal_is_one_line_with_exit_2(home: Path, tmp_path: Path) -> None:
    """The whole matrix in-process (fast); the real-process test below covers the console script itself."""
    runner = CliRunner()
    for args, needles in _refusals(home, tmp_path):
        result = runner.invoke(cli, [*args, "--home", str(home)])
        assert isinstance(result.exception, SystemExit), (args, result.exception)
        assert_refused(subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr), *needles)
    assert PostOffice(home).mailbox("w1").list() == []


def test_refusals_from_the_console_script(home: Path, tmp_path: Path) -> None:
    cases = [case for case in _refusals(home, tmp_path) if case[0][0] in {"register", "read"} or "evil" in case[0]]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda case: mail(home, *case[0]), cases))
    assert len(results) == 4
    for (_, needles), result in zip(cases, results):
        assert_refused(result, *needles)


def test_unknown_recipient_in_a_strict_home(home: Path) -> None:
    (home / "swarm.toml").write_text("name = 'test'\n")
    result = mail(home, "send", "--from", "sup", "--to", "ghost", "--type", "STEER", "--field", "text=hi")
    assert_refused(result, "unknown recipient 'ghost'", "known agents are sup, w1", "register it first")


def test_schema_and_demo(home: Path) -> None:
    schema = mail(home, "schema", "ACK")
    assert schema.returncode == 0 and "message_id" in schema.stdout
    demo = mail(home, "demo")
    assert demo.returncode == 0, demo.stderr
    assert "[worker-1] got ACK" in demo.stdout and "round trip complete" in demo.stdout


def test_version_and_short_help_options(home: Path) -> None:
    version = mail(home, "--version")
    assert version.returncode == 0 and version.stdout.strip() == "agentmail, version " + metadata.version("swarmd")
    short, long = mail(home, "-h"), mail(home, "--help")
    assert short.returncode == 0 and short.stdout == long.stdout and "Agent Mail" in short.stdout
    assert mail(home, "send", "-h").stdout == mail(home, "send", "--help").stdout


# (type, --field, the body field, its value): a field's value is typed by the field it fills.
FIELD_TYPES = [
    ("PROGRESS", "step=3", "step", "3"),
    ("PROGRESS", "step=true", "step", "true"),
    ("PROGRESS", 'step="two words"', "step", "two words"),
    ("PROGRESS", "step=[1, 2]", "step", "[1, 2]"),
    ("PROGRESS", "status=null", "status", "null"),
    ("PROGRESS", "context_pct=40", "context_pct", 40.0),
    ("PROGRESS", "context_pct=12.5", "context_pct", 12.5),
    ("PROGRESS", 'files=["a.py", "b.py"]', "files", ["a.py", "b.py"]),
    ("DONE", "commit=0123", "commit", "0123"),
    ("DONE", "summary=42", "summary", "42"),
    ("DONE", "tests=PASS", "tests", "PASS"),
    ("DONE", 'lint="FAIL"', "lint", "FAIL"),
    ("FAILED", "attempts=2", "attempts", 2),
    ("FAILED", "reason=1e3", "reason", "1e3"),
    ("FAILED", "failure=TESTS_FAIL", "failure", "TESTS_FAIL"),
    ("SPAWN_REQUEST", "count=3", "count", 3),
    ("SPAWN_REQUEST", "profile=123", "profile", "123"),
    ("SPAWN_ACK", "accepted=false", "accepted", False),
    ("SPAWN_ACK", "request_id=7", "request_id", "7"),
    ("HELP_RESPONSE", "request_id=00012", "request_id", "00012"),
    ("ACK", "message_id=12345", "message_id", "12345"),
    ("STEER", "text=0", "text", "0"),
    ("ACCEPTED", "started_at=2024-05-01T10:00:00Z", "started_at", "2024-05-01T10:00:00Z"),
    ("PROGRESS", "extra=[1]", "extra", [1]),  # a field no model has: JSON if it parses, else text
    ("PROGRESS", "extra=word", "extra", "word"),
]


@pytest.mark.parametrize(("kind", "field", "name", "value"), FIELD_TYPES)
def test_field_value_is_typed_by_the_field_it_fills(home: Path, kind: str, field: str, name: str, value: object) -> None:
    extra = ["--field", "request_id=r1"] if kind == "SPAWN_ACK" and name != "request_id" else []
    extra += ["--field", "message_id=m1"] if kind == "ACK" and name != "message_id" else []
    extra += ["--field", "text=go"] if kind == "STEER" and name != "text" else []
    sent = mail(home, "send", "--from", "sup", "--to", "w1", "--type", kind, "--task", "t-1", "--field", field,
                *extra, "--json")
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["body"][name] == value


def test_field_value_that_its_field_cannot_take_is_one_line(home: Path) -> None:
    assert_refused(mail(home, "send", "--from", "sup", "--to", "w1", "--type", "PROGRESS", "--task", "t-1",
                        "--field", "context_pct=lots"), "body.context_pct")
    assert_refused(mail(home, "send", "--from", "sup", "--to", "w1", "--type", "SPAWN_REQUEST",
                        "--field", "count=0"), "body.count")

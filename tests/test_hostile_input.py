"""Hostile input: path traversal in names, planted symlinks, spoofed senders, shell and terminal injection,
oversize and deeply nested JSON. Every refusal is one clear line; nothing is created, read or run elsewhere."""

import json
import os
import traceback
from dataclasses import dataclass
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import click
from click.testing import CliRunner

from agentmail import PostOffice
from agentmail.cli import cli as mail_cli
from conftest import run_cli
from protocol import MessageType, make_message
from standins import StandIns
from swarmd.cli import main as swarm_cli
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.plans.plan import PlanError, load_plan
from swarmd.workers.prompt import render_prompt, write_prompt

ESC = "\x1b"
BAD_AGENT_NAMES = ["..", "../escape", "../../escape", "a/../../escape", "/abs-escape", "A", "x" * 65, "a\nb", "."]
BAD_TASK_IDS = ["..", "../escape", "a/../../escape", "/abs-escape", ".hidden", "x" * 129]
INJECTED = f"evil {ESC}[31mRED{ESC}]0;pwned\x07 [red]markup[/red] [link=file:///etc]x[/link]"


@dataclass
class Ran:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def _invoke(command: click.Command, home: Path, args: tuple[str, ...], stdin: str | None,
            env: dict[str, str] | None = None) -> Ran:
    """Run a CLI in-process (process start-up is the slow part on a busy machine); a crash fails the test."""
    result = CliRunner().invoke(command, list(args), input=stdin, env={"SWARM_HOME": str(home), **(env or {})})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{args} crashed: {''.join(traceback.format_exception(*result.exc_info))}")
    return Ran(args, result.exit_code, result.stdout, result.stderr)


def mail(home: Path, *args: str, stdin: str | None = None) -> Ran:
    return _invoke(mail_cli, home, args, stdin)


def swarm(home: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Ran:
    return _invoke(swarm_cli, home, args, stdin, env)


def assert_refused(result: subprocess.CompletedProcess[str] | Ran, *needles: str) -> None:
    code = result.returncode
    err = result.stderr
    assert code == 2, (code, err)
    assert "Traceback" not in err and err.strip(), err
    for needle in needles:
        assert needle in err, err


def tree(root: Path, skip: Path) -> set[Path]:
    return {p for p in root.rglob("*") if skip not in p.parents and p != skip}


@pytest.fixture
def swarm_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An initialised swarm home at tmp/a/b/home, with cwd two levels below tmp: '../../x' lands in tmp."""
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    home = work / "home"
    assert swarm(home, "init").returncode == 0
    PostOffice(home).register("sup", role="supervisor")
    PostOffice(home).register("w1")
    yield home


# -- path traversal -------------------------------------------------------------------------------------------


def _name_commands(name: str) -> list[tuple[object, list[str]]]:
    return [
        (mail_cli, ["send", "--from", "sup", "--to", name, "--type", "STEER", "--field", "text=x"]),
        (mail_cli, ["send", "--from", name, "--to", "w1", "--type", "STEER", "--field", "text=x"]),
        (mail_cli, ["send", "--from", "sup", "--role", name, "--type", "STEER", "--field", "text=x"]),
        (mail_cli, ["inbox", name]), (mail_cli, ["read", name]), (mail_cli, ["bad", name]),
        (mail_cli, ["register", name]), (mail_cli, ["register", "w2", "--role", name]),
        (swarm_cli, ["registry", "register", name]), (swarm_cli, ["registry", "heartbeat", name]),
        (swarm_cli, ["logs", name]), (swarm_cli, ["kill", name]), (swarm_cli, ["attach", name]),
        (swarm_cli, ["steer", name, "hi"]), (swarm_cli, ["feed", "publish", "x", "--agent", name, "--type", "custom"]),
    ]


@pytest.mark.parametrize("name", BAD_AGENT_NAMES)
def test_bad_agent_names_are_refused_before_any_path_is_built(swarm_dir: Path, tmp_path: Path, name: str) -> None:
    before, boxes = tree(tmp_path, swarm_dir), sorted(os.listdir(swarm_dir / "mail"))
    runner = CliRunner()
    for command, args in _name_commands(name):
        result = runner.invoke(command, args, env={"SWARM_HOME": str(swarm_dir)})  # type: ignore[arg-type]
        assert result.exit_code == 2 and isinstance(result.exception, SystemExit), (args, result.output)
        assert "invalid agent name" in result.stderr, (args, result.stderr)
    assert tree(tmp_path, swarm_dir) == before
    assert sorted(os.listdir(swarm_dir / "mail")) == boxes
    assert not Path("/abs-escape").exists()


@pytest.mark.parametrize("task_id", BAD_TASK_IDS)
def test_bad_task_ids_are_refused_everywhere_they_enter(swarm_dir: Path, tmp_path: Path, task_id: str) -> None:
    before = tree(tmp_path, swarm_dir)
    runner = CliRunner()
    env = {"SWARM_HOME": str(swarm_dir)}
    for command, args in [
        (swarm_cli, ["task", "add", "t", "--id", task_id]),
        (swarm_cli, ["task", "add", "t", "--blocked-by", task_id]),
        (swarm_cli, ["feed", "publish", "x", "--agent", "sup", "--type", "custom", "--task", task_id]),
        (mail_cli, ["send", "--from", "sup", "--to", "w1", "--type", "PROGRESS", "--task", task_id]),
        (mail_cli, ["send", "--from", "sup", "--to", "w1", "--type", "DONE", "--field", f"task={task_id}"]),
    ]:
        result = runner.invoke(command, args, env=env)  # type: ignore[arg-type]
        assert result.exit_code == 2 and "invalid task id" in result.stderr, (args, result.stderr)
    assert tree(tmp_path, swarm_dir) == before
    assert PostOffice(swarm_dir).mailbox("w1").list() == []


def test_plan_and_wave_files_with_traversing_ids_are_refused(swarm_dir: Path, tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"tasks": [{"id": "../../escape", "title": "t", "description": "true"}]}))
    wave = tmp_path / "wave.json"
    wave.write_text(json.dumps({"wave": [{"id": "ok", "title": "t"}],
                                "blocked": [{"id": "../x", "title": "t", "blocked_by": ["ok"]}]}))
    ol = StandIns(tmp_path / "bin", names=("ol",))  # --from-wave needs `ol` on PATH before it reads the file
    before = tree(tmp_path, swarm_dir)
    assert_refused(swarm(swarm_dir, "run", str(plan)), "invalid task id")
    assert_refused(swarm(swarm_dir, "run", "--from-wave", str(wave), env=ol.env()), "invalid task id")
    assert tree(tmp_path, swarm_dir) == before
    assert not (swarm_dir / "ledger" / "events.jsonl").exists(), "nothing reached the board"


def test_message_file_with_traversing_thread_or_sender_is_quarantined(swarm_dir: Path) -> None:
    box = PostOffice(swarm_dir).mailbox("w1")
    good = json.loads(make_message(MessageType.DONE, "sup", "w1", {"task": "t1"}).to_json())
    for seq, change in enumerate([{"thread": "../../x"}, {"from": "../sup"}, {"to": ["../w1"]},
                                  {"body": {"task": "/etc/passwd"}}], start=1):
        data = {**good, **change, "id": f"m{seq}"}
        (box.path / "new" / f"{seq:012d}-m{seq}.json").write_text(json.dumps(data))
    assert box.list() == []
    reasons = dict(box.bad())
    assert len(reasons) == 4 and all("invalid" in r for r in reasons.values()), reasons


# -- symlinks -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("planted", ["mail", "mail/w1", "mail/w1/new", "mail/w1/cur", "mail/w1/tmp"])
def test_symlinked_mailbox_directories_are_refused(swarm_dir: Path, tmp_path: Path, planted: str) -> None:
    outside = tmp_path / "outside"
    target = swarm_dir / planted
    os.rename(target, outside)  # the outside directory holds what was there: a link would make it look right
    target.symlink_to(outside)
    before = tree(outside, tmp_path / "none")
    for args in (["send", "--from", "sup", "--to", "w1", "--type", "STEER", "--field", "text=x"], ["inbox", "w1"],
                 ["read", "w1"], ["register", "w1"]):
        assert_refused(mail(swarm_dir, *args), "symlinked mailbox path")
    assert tree(outside, tmp_path / "none") == before, "nothing was written through the link"


def test_message_file_linked_to_etc_passwd_is_quarantined_never_read(swarm_dir: Path) -> None:
    new = swarm_dir / "mail" / "w1" / "new"
    (new / "000000000001-passwd.json").symlink_to("/etc/passwd")
    inbox = mail(swarm_dir, "inbox", "w1")
    assert inbox.returncode == 0 and "no unread mail" in inbox.stdout
    bad = mail(swarm_dir, "bad", "w1")
    assert "000000000001-passwd.json" in bad.stdout and "symbolic links" in bad.stdout
    assert "root:" not in inbox.stdout + bad.stdout
    assert (swarm_dir / "mail" / "w1" / "bad" / "000000000001-passwd.json").is_symlink()
    assert Path("/etc/passwd").is_file()


def test_message_file_linked_to_a_valid_message_outside_is_not_delivered(swarm_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "forged.json"
    message = make_message(MessageType.STEER, "sup", "w1", {"text": "forged"})
    outside.write_text(message.to_json())
    (swarm_dir / "mail" / "w1" / "new" / f"000000000001-{message.id}.json").symlink_to(outside)
    assert PostOffice(swarm_dir).mailbox("w1").list() == []
    read = mail(swarm_dir, "read", "w1")
    assert read.returncode == 1 and "forged" not in read.stdout
    assert outside.read_text() == message.to_json()


def test_symlinked_role_file_is_refused_not_read(swarm_dir: Path) -> None:
    role = swarm_dir / "mail" / "w1" / "role"
    role.unlink()
    role.symlink_to("/etc/passwd")
    result = mail(swarm_dir, "agents")
    assert_refused(result, "role")
    assert "root:" not in result.stdout + result.stderr


@pytest.mark.parametrize("planted", ["events.jsonl", "board.json", "registry.json"])
def test_symlinked_ledger_files_are_refused(swarm_dir: Path, tmp_path: Path, planted: str) -> None:
    """A ledger file linked to another swarm's: never read through (its SECRET task stays unseen) nor written."""
    assert swarm(swarm_dir, "task", "add", "real task").returncode == 0
    other = tmp_path / "other-home"
    assert swarm(other, "init").returncode == 0 and swarm(other, "task", "add", "SECRET elsewhere").returncode == 0
    assert swarm(other, "registry", "register", "spy").returncode == 0
    Ledger(SwarmHome(other)).snapshot()
    outside = other / "ledger" / planted
    before = outside.read_bytes()
    link = swarm_dir / "ledger" / planted
    link.unlink(missing_ok=True)
    link.symlink_to(outside)
    for args in (["board"], ["feed"], ["task", "add", "more"], ["task", "show", "t-1"], ["registry", "list"],
                 ["stats"]):
        result = swarm(swarm_dir, *args)
        assert_refused(result, "symbolic link", str(link))
        assert "SECRET" not in result.stdout and "spy" not in result.stdout
    assert outside.read_bytes() == before


# -- who sent it ----------------------------------------------------------------------------------------------


def test_spoofed_sender_still_carries_the_real_origin(swarm_dir: Path) -> None:
    proc = subprocess.Popen([str(Path(sys.executable).parent / "agentmail"), "send", "--from", "supervisor",
                             "--to", "w1", "--type", "STEER", "--field", "text=obey", "--home", str(swarm_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    inbox = json.loads(mail(swarm_dir, "inbox", "w1", "--json").stdout)
    origin = inbox[0]["message"]["origin"]
    assert inbox[0]["message"]["from"] == "supervisor"
    assert origin["pid"] == proc.pid and origin["pid"] != os.getpid() and origin["uid"] == os.getuid()
    read = json.loads(mail(swarm_dir, "read", "w1", "--json").stdout)
    assert read["id"] == out.strip() and read["origin"]["pid"] == proc.pid


def test_an_origin_claimed_by_the_sender_is_overwritten(swarm_dir: Path) -> None:
    code = ("import sys; from agentmail import PostOffice; from protocol import make_message; "
            "m = make_message('STEER', 'supervisor', 'w1', {'text': 'x'}, origin={'pid': 1, 'uid': 0, 'host': 'evil'}); "
            f"PostOffice({str(swarm_dir)!r}).send(m)")
    child = subprocess.Popen([sys.executable, "-c", code])
    assert child.wait(timeout=60) == 0
    origin = PostOffice(swarm_dir).mailbox("w1").list()[0].message.origin
    assert origin is not None and (origin.pid, origin.host) == (child.pid, os.uname().nodename)


# -- shell metacharacters and terminal escapes ----------------------------------------------------------------


def _shell_payloads(markers: Path) -> list[str]:
    return [f"$(touch {markers}/m1)", f"`touch {markers}/m2`", f"; touch {markers}/m3", f"| touch {markers}/m4",
            f"&& touch {markers}/m5", f"x\ntouch {markers}/m6", f"'; touch {markers}/m7; '", f"\"$(touch {markers}/m8)\""]


def test_shell_metacharacters_in_titles_and_bodies_are_never_run(swarm_dir: Path, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    for i, payload in enumerate(_shell_payloads(markers)):
        assert swarm(swarm_dir, "task", "add", payload, "--description", payload, "--id", f"s{i}").returncode == 0
        assert mail(swarm_dir, "send", "--from", "sup", "--to", "w1", "--type", "STEER", "--field",
                    f"text={payload}").returncode == 0
    shown = [swarm(swarm_dir, "board"), swarm(swarm_dir, "feed"), swarm(swarm_dir, "task", "show", "s0"),
             mail(swarm_dir, "inbox", "w1"), mail(swarm_dir, "read", "w1")]
    assert all(r.returncode == 0 for r in shown)
    for task in Ledger(SwarmHome(swarm_dir)).board().values():
        prompt = tmp_path / f"{task.id}.md"
        write_prompt(prompt, render_prompt(task, agent="w1", attempt=1, max_attempts=3, home=swarm_dir))
        assert f"touch {markers}" in prompt.read_text()
    assert list(markers.iterdir()) == []


def _outputs(home: Path) -> list[Ran]:
    return [swarm(home, "board"), swarm(home, "feed"), swarm(home, "task", "show", "evil"),
            swarm(home, "registry", "list"), swarm(home, "stats"), mail(home, "inbox", "w1"), mail(home, "bad", "w1")]


def test_terminal_escapes_and_markup_never_reach_the_terminal_raw(swarm_dir: Path) -> None:
    assert swarm(swarm_dir, "task", "add", INJECTED, "--description", INJECTED, "--id", "evil").returncode == 0
    assert swarm(swarm_dir, "task", "note", "evil", INJECTED).returncode == 0
    assert swarm(swarm_dir, "feed", "publish", INJECTED, "--agent", "w1", "--type", "finding").returncode == 0
    assert mail(swarm_dir, "send", "--from", "sup", "--to", "w1", "--type", "STEER", "--field",
                f"text={INJECTED}").returncode == 0
    (swarm_dir / "mail" / "w1" / "new" / f"{ESC}[2J{ESC}]0;x\x07.json").write_text("{}")
    for result in _outputs(swarm_dir):
        assert result.returncode == 0, result
        assert ESC not in result.stdout + result.stderr, (result.args, result.stdout)
    board, feed = swarm(swarm_dir, "board").stdout, swarm(swarm_dir, "feed").stdout
    assert "[red]" in board and "[red]markup" in feed, "rich markup is shown literally, not interpreted"
    assert "\\x1b[31mRED" in mail(swarm_dir, "inbox", "w1").stdout


def test_escapes_from_data_are_absent_even_when_colour_is_forced(swarm_dir: Path) -> None:
    assert swarm(swarm_dir, "task", "add", INJECTED, "--id", "evil").returncode == 0
    colour = {"SWARM_HOME": str(swarm_dir), "FORCE_COLOR": "1", "TERM": "xterm-256color", "COLUMNS": "300"}
    out = run_cli("swarm", "board", env=colour).stdout  # a real process: what a terminal would get
    assert f"{ESC}[31mRED" not in out and f"{ESC}]0;pwned" not in out
    assert "[red]markup[/red]" in out


# -- oversize and deep JSON -----------------------------------------------------------------------------------


def _deep(levels: int) -> str:
    return '{"text": "x", "n": ' + "[" * levels + "]" * levels + "}"


def test_two_megabyte_body_is_refused_clearly(swarm_dir: Path) -> None:
    body = json.dumps({"text": "x" * (2 << 20)})
    result = mail(swarm_dir, "send", "--from", "sup", "--to", "w1", "--type", "STEER", "--body-json", "-", stdin=body)
    assert_refused(result, "over the limit")
    assert PostOffice(swarm_dir).mailbox("w1").list() == []
    assert os.listdir(swarm_dir / "mail" / "w1" / "tmp") == []


def test_deeply_nested_body_is_refused_without_a_traceback(swarm_dir: Path, tmp_path: Path) -> None:
    result = run_cli("agentmail", "send", "--from", "sup", "--to", "w1", "--type", "STEER", "--body-json", "-",
                     "--home", str(swarm_dir), stdin=_deep(100_000))  # a real process, stdin and all
    assert result.returncode == 2 and "nested too deeply" in result.stderr and "Traceback" not in result.stderr
    body_file = tmp_path / "body.json"
    body_file.write_text(_deep(100_000))
    result = mail(swarm_dir, "send", "--from", "sup", "--to", "w1", "--type", "STEER", "--body-file", str(body_file))
    assert result.returncode == 2 and "nested too deeply" in result.stderr
    binary = mail(swarm_dir, "send", "--from", "sup", "--to", "w1", "--type", "STEER", "--body-file", "/bin/sh")
    assert binary.returncode == 2 and "not UTF-8" in binary.stderr and "Traceback" not in binary.stderr


def test_deeply_nested_message_file_is_quarantined(swarm_dir: Path) -> None:
    box = PostOffice(swarm_dir).mailbox("w1")
    good = make_message(MessageType.STEER, "sup", "w1", {"text": "x"})
    text = good.to_json()[:-1] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}"
    (box.path / "new" / f"000000000001-{good.id}.json").write_text(text)
    assert box.list() == []
    [(name, reason)] = box.bad()
    assert name.endswith(f"{good.id}.json") and "recursion" in reason


@pytest.mark.parametrize("name,text", [
    ("deep.json", '{"tasks": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    ("deep.toml", "tasks = " + "[" * 100_000 + "]" * 100_000),
    ("deep-inline.toml", "x = " + "{a = " * 5_000 + "1" + "}" * 5_000),
    ("deep", "[" * 100_000),
])
def test_deeply_nested_plan_is_a_plan_error(swarm_dir: Path, tmp_path: Path, name: str, text: str) -> None:
    plan = tmp_path / name
    plan.write_text(text)
    with pytest.raises(PlanError, match="nested too deeply"):
        load_plan(plan)
    result = swarm(swarm_dir, "run", str(plan))
    assert_refused(result, "nested too deeply")

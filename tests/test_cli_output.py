"""What the two CLIs print around the real work: usage errors, a reader that goes away, multi-line text,
feed columns, the order of the end-of-run summary and how a failed attempt is announced."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli
from swarmkit import events, init_home, write_plan

from protocol.event import Event, EventType
from swarmd.home import SwarmHome
from swarmd.cli.view import event_line


@pytest.mark.parametrize("argv", [
    ("swarm", "run", "--foo"), ("swarm", "--nope"), ("swarm", "stats", "extra"), ("swarm", "task", "add"),
    ("agentmail", "send", "--bogus"), ("agentmail", "nosuchcommand"),
])
def test_usage_errors_are_one_line_naming_the_help_to_read(argv: tuple[str, ...]) -> None:
    result = run_cli(*argv)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{argv[0]}: error: ") and "--help`)" in lines[0]
    assert "Usage:" not in lines[0] and "Traceback" not in result.stderr


def test_a_group_without_a_command_still_prints_its_whole_help() -> None:
    for argv in (("swarm",), ("swarm", "task"), ("agentmail",)):
        result = run_cli(*argv)
        text = result.stdout + result.stderr
        assert text.startswith(f"Usage: {' '.join(argv)} ") and "Commands:" in text and "error" not in text


def test_agentmail_takes_short_help_and_version() -> None:
    short = run_cli("agentmail", "-h")
    assert short.returncode == 0 and "Usage: agentmail" in short.stdout
    version = run_cli("agentmail", "--version")
    assert version.returncode == 0 and version.stdout.startswith("agentmail, version ")


def _with_closed_stdout(*argv: str) -> tuple[int, str]:
    """Run a console script whose stdout is a pipe nobody reads any more (as `| head -1` leaves it)."""
    exe = Path(sys.executable).parent / argv[0]
    proc = subprocess.Popen([str(exe), *argv[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the interpreter has even started: its first write meets a closed pipe
    err = proc.stderr.read().decode()
    return proc.wait(timeout=60), err


def test_a_reader_that_goes_away_ends_every_command_quietly(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home)
    home = ["--home", str(swarm_home.root)]
    assert run_cli("swarm", "task", "add", "one", "--id", "t1", "--description", "a\nb", *home).returncode == 0
    for argv in (("swarm", "status", *home), ("swarm", "board", *home), ("swarm", "task", "show", "t1", *home),
                 ("swarm", "feed", *home), ("swarm", "stats", *home), ("swarm", "board", "--json", *home),
                 ("agentmail", "schema"), ("agentmail", "agents", "--home", str(swarm_home.root))):
        code, err = _with_closed_stdout(*argv)
        assert err == "", f"{argv[:3]} said {err!r}"
        assert code in (0, 141), f"{argv[:3]} exited {code}"


def test_task_show_prints_line_breaks_and_keeps_other_controls_inert(swarm_home: SwarmHome) -> None:
    init_home(swarm_home)
    home = ["--home", str(swarm_home.root)]
    text = "step one\nstep two \x1b[31mred\x07"
    assert run_cli("swarm", "task", "add", "t", "--id", "t1", "--description", text, *home).returncode == 0
    shown = run_cli("swarm", "task", "show", "t1", *home)
    assert shown.returncode == 0
    assert "\nstep one\nstep two \\x1b[31mred\\x07\n" in shown.stdout
    assert "\\n" not in shown.stdout and "\x1b" not in shown.stdout and "\x07" not in shown.stdout


@pytest.mark.parametrize("kind", list(EventType))
def test_feed_columns_never_run_into_each_other(kind: EventType) -> None:
    for agent in ("supervisor", "a-much-longer-agent-name"):
        line = event_line(Event(agent=agent, type=kind, summary="something happened")).plain
        assert line.split()[1:4] == [kind.value, agent, "something"], line


def test_summary_follows_the_waves_and_a_failed_attempt_is_not_a_dead_worker(swarm_home: SwarmHome,
                                                                              tmp_path: Path) -> None:
    init_home(swarm_home, max_workers=2)
    plan = write_plan(tmp_path / "plan.json", [
        {"id": "a-last", "title": "third wave", "description": "exit 3", "blocked_by": ["m-middle"],
         "max_attempts": 1},
        {"id": "m-middle", "title": "second wave", "description": "true", "blocked_by": ["z-first"]},
        {"id": "z-first", "title": "first wave", "description": "true", "priority": 1},
        {"id": "y-first", "title": "first wave, better priority", "description": "true", "priority": 0},
    ])
    home = ["--home", str(swarm_home.root)]
    result = run_cli("swarm", "run", str(plan), *home, "--wait", "--timeout", "90s", timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    summary = result.stdout[result.stdout.index("summary"):]
    order = sorted(("a-last", "m-middle", "z-first", "y-first"), key=summary.index)
    assert order == ["y-first", "z-first", "m-middle", "a-last"], summary

    stopped = [e for e in events(swarm_home) if e.type == EventType.AGENT_STOPPED]
    failed = [e for e in stopped if e.detail.get("status") == "dead"]
    assert [e.summary for e in failed] == [f"{failed[0].detail['name']} stopped: attempt failed"]
    assert not any("is dead" in e.summary for e in stopped)
    again = run_cli("swarm", "run", str(plan), *home, "--wait", "--json", timeout=120)
    assert [t["id"] for t in json.loads(again.stdout)] == ["y-first", "z-first", "m-middle", "a-last"]

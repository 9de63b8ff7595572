"""The ledger commands as a user runs them: real `swarm` processes on a real home."""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from click.testing import CliRunner

from conftest import run_cli
from swarmd.cli import main
from swarmd.home import SwarmHome


@pytest.fixture
def home(swarm_home: SwarmHome) -> str:
    result = run_cli("swarm", "init", "--home", str(swarm_home.root))
    assert result.returncode == 0 and result.stdout.strip() == str(swarm_home.root)
    return str(swarm_home.root)


def swarm(home: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`swarm ARGS --home HOME` as a real process."""
    return run_cli("swarm", *args, "--home", home)


def cli(home: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The same command run in this process (the interpreter's start-up dominates a real run's time)."""
    result = CliRunner(catch_exceptions=False).invoke(main, [*args, "--home", home])
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 2 with one line on stderr naming the problem, and no traceback."""
    assert result.returncode == 2, result
    assert result.stderr.startswith("swarm: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr


def test_init_is_idempotent_and_other_commands_need_it(home_dir: Path) -> None:
    refused(run_cli("swarm", "board", "--home", str(home_dir)), f"no swarm home at {home_dir}", "swarm init")
    for _ in range(2):
        result = run_cli("swarm", "init", "--home", str(home_dir))
        assert result.returncode == 0 and result.stdout.strip() == str(home_dir)
    assert os.stat(home_dir).st_mode & 0o777 == 0o700


def test_task_add_update_show_board(home: str) -> None:
    assert cli(home, "task", "add", "write the parser", "--tag", "core", "--priority", "2").stdout.strip() == "t-1"
    assert cli(home, "task", "add", "test it", "--blocked-by", "t-1").stdout.strip() == "t-2"
    assert cli(home, "task", "add", "docs", "--id", "docs-1").stdout.strip() == "docs-1"
    assert cli(home, "task", "update", "t-1", "--status", "in_progress", "--assignee", "w1").returncode == 0
    assert cli(home, "task", "note", "t-1", "--kind", "finding", "the grammar is LL(1)").returncode == 0
    shown = json.loads(cli(home, "task", "show", "t-1", "--json").stdout)
    assert (shown["status"], shown["assignee"], shown["notes"][0]["text"]) == ("in_progress", "w1", "the grammar is LL(1)")
    tasks = json.loads(cli(home, "board", "--json").stdout)
    assert {t["id"]: t["status"] for t in tasks} == {"t-1": "in_progress", "t-2": "open", "docs-1": "open"}
    assert [t["id"] for t in json.loads(cli(home, "board", "--json", "--tag", "core").stdout)] == ["t-1"]
    table = cli(home, "board").stdout
    assert "in_progress (1)" in table and "open (2)" in table and "write the parser" in table
    assert "the grammar is LL(1)" in cli(home, "task", "show", "t-1").stdout


def test_refusals_are_one_line_exit_2(home: str) -> None:
    cli(home, "task", "add", "a")
    cli(home, "task", "add", "b", "--blocked-by", "t-1")
    # Real processes for what a user sees: one line on stderr, exit 2, no traceback.
    refused(swarm(home, "task", "add", "c", "--blocked-by", "t-9"), "unknown task 't-9'")
    refused(swarm(home, "task", "update", "t-1", "--blocked-by", "t-2"), "dependency cycle: t-1 -> t-2 -> t-1")
    refused(swarm(home, "registry", "register", "../up"), "invalid agent name")
    refused(cli(home, "task", "add", "again", "--id", "t-1"), "'t-1' is already taken")
    refused(cli(home, "task", "add", "bad", "--id", "../x"), "invalid task id")
    assert cli(home, "task", "update", "t-1", "--status", "done").returncode == 0
    refused(cli(home, "task", "update", "t-1", "--status", "in_progress"), "cannot go from done to in_progress")
    refused(cli(home, "task", "show", "t-7"), "no task 't-7'", "swarm board")
    refused(cli(home, "feed", "publish", "--agent", "Bad Name", "--type", "progress", "hi"), "invalid agent name")


def test_control_characters_and_markup_never_reach_the_terminal_raw(home: str) -> None:
    evil = "pwn \x1b]0;title\x07 \x1b[2J [bold red]loud[/bold red] \r"
    cli(home, "task", "add", evil)
    cli(home, "feed", "publish", "--agent", "w1", "--type", "finding", evil, "--task", "t-1")
    for args in (("board",), ("feed",), ("task", "show", "t-1")):
        out = swarm(home, *args).stdout
        assert "\x1b" not in out.replace("\x1b[", "") and "\x07" not in out and "\r" not in out, args
        assert "\\x1b" in out and "[bold red]loud[/bold red]" in out, args
    assert json.loads(cli(home, "board", "--json").stdout)[0]["title"] == evil


def test_feed_filters_limit_publish_and_stats(home: str) -> None:
    cli(home, "task", "add", "a")
    for i in range(5):
        assert cli(home, "feed", "publish", "--agent", f"w{i % 2}", "--type", "progress", f"step {i}").stdout.strip() \
            == str(i + 2)
    lines = cli(home, "feed", "--json", "--agent", "w1").stdout.splitlines()
    assert [json.loads(line)["summary"] for line in lines] == ["step 1", "step 3"]
    assert [json.loads(line)["seq"] for line in cli(home, "feed", "--json", "-n", "2").stdout.splitlines()] == [5, 6]
    assert "task_created [t-1] a" in cli(home, "feed", "--type", "task_created").stdout
    stats = json.loads(cli(home, "stats", "--json").stdout)
    assert stats["events"] == 6 and stats["events_by_type"] == {"task_created": 1, "progress": 5}
    assert stats["events_by_agent"] == {"operator": 1, "w0": 3, "w1": 2} and stats["tasks_by_status"] == {"open": 1}
    assert "events by type (6)" in cli(home, "stats").stdout


def test_registry_commands_and_stale_discovery(home: str) -> None:
    for name, role in (("w1", "worker"), ("w2", "worker"), ("r1", "reviewer")):
        assert cli(home, "registry", "register", name, "--role", role).returncode == 0
    assert cli(home, "registry", "discover", "--role", "worker").stdout.split() == ["w1", "w2"]
    old = time.time() - 3600  # w2 went silent an hour ago (default stale_after is 300 s)
    os.utime(Path(home) / "run" / "heartbeats" / "w2", (old, old))
    assert cli(home, "registry", "discover", "--role", "worker").stdout.split() == ["w1"]
    listed = json.loads(cli(home, "registry", "list", "--json", "--status", "stale").stdout)
    assert [a["name"] for a in listed] == ["w2"]
    assert cli(home, "registry", "heartbeat", "w2").returncode == 0
    assert cli(home, "registry", "discover", "--role", "worker").stdout.split() == ["w1", "w2"]
    assert "reviewer" in cli(home, "registry", "list").stdout


def test_feed_follow_prints_new_events_and_exits_0_on_ctrl_c(home: str) -> None:
    exe = Path(sys.executable).parent / "swarm"
    proc = subprocess.Popen([str(exe), "feed", "--follow", "--json", "--home", home], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    try:
        deadline = time.monotonic() + 20
        got = None
        while got is None and time.monotonic() < deadline:  # publish until the follower (still starting) sees one
            swarm(home, "feed", "publish", "--agent", "w1", "--type", "finding", "hello")
            try:
                got = json.loads(lines.get(timeout=30))
            except queue.Empty:
                continue
        assert got is not None and got["summary"] == "hello" and got["agent"] == "w1"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "Traceback" not in err

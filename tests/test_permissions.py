"""Permissions: a swarm home is private (directories 0700, files 0600) and another user cannot read mail,
list a mailbox, append to the ledger or reach the tmux server. We run as root in CI, so "another user" is
`nobody` (uid 65534) in a subprocess; the tests skip where a second uid is not available."""

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from agentmail import PostOffice
from conftest import run_cli
from protocol import MessageType, make_message
from swarmd.cli import main as swarm_main
from swarmd.home import SwarmHome

NOBODY = 65534


def private_problems(root: Path) -> list[str]:
    """Every directory under `root` that is not 0700 and every file that is not 0600 (sockets: no group/other)."""
    problems = []
    for path in [root, *root.rglob("*")]:
        mode = os.lstat(path).st_mode
        perms = stat.S_IMODE(mode)
        if stat.S_ISDIR(mode) and perms != 0o700:
            problems.append(f"{path}: directory {perms:o}")
        elif stat.S_ISREG(mode) and perms != 0o600:
            problems.append(f"{path}: file {perms:o}")
        elif stat.S_ISSOCK(mode) and perms & 0o077:
            problems.append(f"{path}: socket {perms:o}")
    return problems


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), user=NOBODY, group=NOBODY, extra_groups=[], capture_output=True, text=True,
                          timeout=30, check=False, env={"PATH": os.environ["PATH"], "HOME": "/"})


@pytest.fixture
def open_base() -> Iterator[Path]:
    """A world-traversable directory (pytest's tmp is private to root, which would hide our own mistakes)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a probe as another uid")
    base = Path(tempfile.mkdtemp(prefix="swarm-perm-", dir="/tmp"))
    base.chmod(0o755)
    try:
        probe = as_nobody("true")
    except (PermissionError, OSError) as exc:
        shutil.rmtree(base)
        pytest.skip(f"cannot run a process as uid {NOBODY}: {exc}")
    if probe.returncode != 0:
        shutil.rmtree(base)
        pytest.skip(f"cannot run a process as uid {NOBODY}: {probe.stderr}")
    yield base
    shutil.rmtree(base, ignore_errors=True)


def swarm_inproc(*args: str) -> int:
    """`swarm` in this process (starting processes is slow on a busy machine); the exit code."""
    result = CliRunner().invoke(swarm_main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result.exit_code


def _populate(home: Path) -> Path:
    """Init a home, deliver a message and append events; the path of the delivered message file."""
    assert swarm_inproc("init", "--home", str(home)) == 0
    po = PostOffice(home)
    po.register("w1")
    po.send(make_message(MessageType.STEER, "operator", "w1", {"text": "secret"}))
    for args in (("task", "add", "a task"), ("registry", "register", "w1"), ("registry", "heartbeat", "w1")):
        assert swarm_inproc(*args, "--home", str(home)) == 0
    [delivered] = po.mailbox("w1").list()
    return delivered.path


def test_home_is_private_after_init_sends_and_appends(home_dir: Path) -> None:
    assert run_cli("swarm", "init", "--home", str(home_dir)).returncode == 0
    assert private_problems(home_dir) == []
    _populate(home_dir)
    result = run_cli("agentmail", "send", "--from", "w1", "--to", "operator", "--type", "DONE", "--task", "t-1",
                     env={"SWARM_HOME": str(home_dir)})
    assert result.returncode == 0, result.stderr
    assert run_cli("agentmail", "read", "operator", env={"SWARM_HOME": str(home_dir)}).returncode == 0
    assert private_problems(home_dir) == []


def test_private_even_under_a_permissive_umask(home_dir: Path) -> None:
    code = ("import os, sys; os.umask(0); from swarmd.cli import main; sys.argv = ['swarm', 'init', '--home', "
            f"{str(home_dir)!r}]; main()")
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 0
    code = ("import os; os.umask(0); from agentmail import PostOffice; from protocol import make_message; "
            f"PostOffice({str(home_dir)!r}).send(make_message('STEER', 'a', 'operator', {{'text': 'x'}}))")
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 0
    assert private_problems(home_dir) == []


def test_another_user_can_neither_read_nor_write(open_base: Path) -> None:
    home = open_base / "home"
    message = _populate(home)
    control = open_base / "public.txt"
    control.write_text("anyone may read this")
    control.chmod(0o644)
    assert as_nobody("cat", str(control)).returncode == 0, "the probe itself works: denials below are ours"
    events = home / "ledger" / "events.jsonl"
    size = events.stat().st_size
    attempts = {
        "read a message": as_nobody("cat", str(message)),
        "list a mailbox": as_nobody("ls", str(message.parent)),
        "append to the ledger": as_nobody("sh", "-c", f"echo forged >> {events}"),
        "read the ledger": as_nobody("cat", str(events)),
        "list the home": as_nobody("ls", str(home)),
        "deliver into a mailbox": as_nobody("sh", "-c", f"echo forged > {message.parent.parent / 'tmp' / 'forged'}"),
        "create a mailbox": as_nobody("mkdir", str(home / "mail" / "intruder")),
    }
    for what, result in attempts.items():
        assert result.returncode != 0, f"nobody could {what}: {result.stdout}"
        assert "ermission denied" in result.stderr or "PermissionError" in result.stderr, (what, result.stderr)
    assert events.stat().st_size == size
    assert len(PostOffice(home).mailbox("w1").list()) == 1


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_swarm_run_keeps_home_and_tmux_socket_private(open_base: Path) -> None:
    home = SwarmHome(open_base / "home")
    markers = open_base / "markers"
    markers.mkdir()
    assert run_cli("swarm", "init", "--home", str(home.root)).returncode == 0
    home.config_file.write_text('name = "p"\nmax_workers = 1\ndurable = false\ntick = 0.1\nheartbeat_interval = 1.0\n')
    title = f"$(touch {markers}/m1) `touch {markers}/m2`; touch {markers}/m3"
    plan = open_base / "plan.json"
    plan.write_text(json.dumps({"tasks": [{"id": "t1", "title": title, "description": "true"}]}))
    try:
        result = run_cli("swarm", "run", str(plan), "--home", str(home.root), "--wait", "--timeout", "60s", timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert list(markers.iterdir()) == [], "a title is never run as shell"
        assert private_problems(home.root) == []
        socket_dir = home.tmux_socket.parent
        assert stat.S_IMODE(socket_dir.stat().st_mode) == 0o700
        _start_tmux(home)
        denied = as_nobody("tmux", "-S", str(home.tmux_socket), "ls")
        assert denied.returncode != 0 and "ermission denied" in denied.stderr, denied
        mine = subprocess.run(["tmux", "-S", str(home.tmux_socket), "ls"], capture_output=True, text=True, check=False)
        assert mine.returncode == 0, "the owner still reaches the server: the denial is about the user"
    finally:
        subprocess.run(["tmux", "-S", str(home.tmux_socket), "kill-server"], capture_output=True, check=False)


def _start_tmux(home: SwarmHome) -> None:
    """Keep the swarm's tmux server alive for the probe (the run may have ended every session)."""
    subprocess.run(["tmux", "-S", str(home.tmux_socket), "new-session", "-d", "-s", "probe", "sleep 60"],
                   check=True, capture_output=True)
    assert home.tmux_socket.is_socket()


def test_supervisor_lock_file_is_private(home_dir: Path) -> None:
    from swarmd.supervisor.daemon import running_pid, supervisor_lock

    home = SwarmHome(home_dir)
    home.ensure_dirs()
    assert running_pid(home) is None
    with supervisor_lock(home):
        for path in (home.run_dir / "supervisor.lock", home.pid_file):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

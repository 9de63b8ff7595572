"""The pane pool (swarmd.workers.warmpanes): a worker that exits 0 leaves its pane to the next one, which gets
the pane clean (its own environment, log, screen and terminal modes, the terminal its own) while a failed
worker's dead pane stays; panes waiting for an order end when their pool does, however it ends."""

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from protocol.event import EventType
from protocol.task import TaskStatus
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.supervisor.daemon import running_pid
from swarmd.workers.forkserver import ForkServer
from swarmd.workers.tmux import TmuxServer
from swarmd.workers.warmpanes import WARM_MARK, Order, WarmPanes
from conftest import run_cli
from swarmkit import FAST_CONFIG, wait_until, write_plan

PROFILE_A = '\n[profiles.a]\ncommand = "{python} -m swarmd.worker --script"\nenv = { ONLY_A = "1" }\n'


def _init(home: SwarmHome, warm_panes: int, extra: str = "") -> None:
    assert run_cli("swarm", "init", "--home", str(home.root)).returncode == 0
    config = FAST_CONFIG.format(max_workers=1, heartbeat=1.0, stale=30.0)
    home.config_file.write_text(config + f"warm_panes = {warm_panes}\n" + extra)


def _spawned(home: SwarmHome) -> dict[str, dict]:
    """Task -> the detail of its (last) worker_spawned event."""
    return {e.task: e.detail for e in Ledger(home).events() if e.type == EventType.WORKER_SPAWNED and e.task}


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _warm_sessions(tmux: TmuxServer) -> list[str]:
    return [s for s in tmux.sessions() if WARM_MARK in s] if tmux.is_running() else []


def test_a_pane_left_by_a_worker_serves_the_next_one_clean(swarm_home: SwarmHome, tmp_path: Path) -> None:
    # No panes started ahead: the first worker gets a session of its own, the second the pane it left.
    _init(swarm_home, warm_panes=0, extra=PROFILE_A)
    first, second, home = tmp_path / "first", tmp_path / "second", str(swarm_home.root)
    assert run_cli("swarm", "up", "--home", home).returncode == 0  # it stays up between the two plans
    plan = write_plan(tmp_path / "one.json", [{"id": "one", "title": "one", "profile": "a", "description":
        f"sleep 300 & echo $! > {first}.bg\necho FIRST-MARK\nstty -echo\nenv > {first}.env"}])
    assert run_cli("swarm", "run", str(plan), "--home", home, "--wait", "--timeout", "60s", timeout=90).returncode == 0
    tmux = TmuxServer(swarm_home.tmux_socket)
    wait_until(lambda: _warm_sessions(tmux), 30, "the first worker's pane back in the pool")
    plan = write_plan(tmp_path / "two.json", [{"id": "two", "title": "two", "description":
        f"echo SECOND-MARK\nenv > {second}.env\nstty -a > {second}.stty\nstat -c '%t %T' \"$(tty)\" > {second}.facts\n"
        f"cat /proc/$$/stat >> {second}.facts"}])
    assert run_cli("swarm", "run", str(plan), "--home", home, "--wait", "--timeout", "60s", timeout=90).returncode == 0
    ledger, spawned = Ledger(swarm_home), _spawned(swarm_home)
    assert spawned["two"]["pid"] == spawned["one"]["pid"], "the second worker ran in the first one's pane"
    one, two = ledger.task("one").attempts[-1].worker, ledger.task("two").attempts[-1].worker
    assert "FIRST-MARK" in (swarm_home.logs_dir / f"{one}.log").read_text()
    second_log = (swarm_home.logs_dir / f"{two}.log").read_text()
    assert "SECOND-MARK" in second_log and "FIRST-MARK" not in second_log, "each worker's log is its own"
    env = dict(line.split("=", 1) for line in Path(f"{second}.env").read_text().splitlines() if "=" in line)
    assert env["SWARM_AGENT"] == two and env["SWARM_TASK"] == "two"
    assert "ONLY_A" not in env, "nothing of the first worker's environment is left"
    assert "ONLY_A=1" in Path(f"{first}.env").read_text()
    modes = Path(f"{second}.stty").read_text().split()
    assert "echo" in modes and "-echo" not in modes, "the terminal's modes are the pane's again"
    # the second worker owns the terminal as the first did: its controlling terminal, its foreground group
    # (the terminal's device read by the worker itself: the pane may be gone by now, and /dev/pts/N with it)
    tty_device, stat = Path(f"{second}.facts").read_text().splitlines()
    major, minor = (int(number, 16) for number in tty_device.split())
    fields = stat.rsplit(")", 1)[1].split()
    assert int(fields[4]) == os.makedev(major, minor) and int(fields[2]) == int(fields[5])
    # what the first worker left running in its group was hung up when it ended
    background = int(Path(f"{first}.bg").read_text())
    wait_until(lambda: not _alive(background), 10, "the first worker's background job to be hung up")
    run_cli("swarm", "down", "--home", home)


def test_a_failed_worker_never_leaves_its_pane_to_the_pool(swarm_home: SwarmHome, tmp_path: Path) -> None:
    _init(swarm_home, warm_panes=0)  # so that any pane in the pool would be one a worker left
    home = str(swarm_home.root)
    assert run_cli("swarm", "up", "--home", home).returncode == 0
    plan = write_plan(tmp_path / "plan.json", [
        {"id": "bad", "title": "bad", "max_attempts": 1, "description": "echo BAD-MARK; exit 3"}])
    assert run_cli("swarm", "run", str(plan), "--home", home).returncode == 0
    ledger, tmux = Ledger(swarm_home), TmuxServer(swarm_home.tmux_socket)
    wait_until(lambda: ledger.task("bad").status == TaskStatus.BLOCKED, 60, "the task blocked")
    session = ledger.registry()[ledger.task("bad").attempts[-1].worker].session
    # Its pane dies (kept for a post-mortem, or ended by the supervisor once it read the FAILED): it is not
    # left alive for the pool, which would rename it away.
    wait_until(lambda: (pane := tmux.panes().get(session)) is None or pane.dead, 30, "the failed worker's pane")
    assert _warm_sessions(tmux) == [], "a failed worker's pane went to the pool"
    assert run_cli("swarm", "down", "--home", home).returncode == 0


def test_panes_waiting_for_an_order_end_with_their_supervisor(swarm_home: SwarmHome) -> None:
    _init(swarm_home, warm_panes=2)
    assert run_cli("swarm", "up", "--home", str(swarm_home.root)).returncode == 0
    pid = wait_until(lambda: running_pid(swarm_home), 15, "the supervisor")
    tmux = TmuxServer(swarm_home.tmux_socket)
    wait_until(lambda: len(_warm_sessions(tmux)) == 2, 30, "two panes started ahead")
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not _warm_sessions(tmux), 30, "the waiting panes to end with their supervisor")


@pytest.fixture
def pool(swarm_home: SwarmHome):
    """A pool of two panes on the home's tmux server, with a fork server; stopped (and killed) after."""
    swarm_home.ensure_dirs()
    tmux, server = TmuxServer(swarm_home.tmux_socket), ForkServer(swarm_home.root).start()
    panes = WarmPanes(swarm_home.root, tmux, server.address, swarm="t", size=2, keep=lambda: 2,
                      wake_file=swarm_home.run_dir / "pane-died").run()
    try:
        yield panes, tmux
    finally:
        panes.stop()
        server.stop()
        tmux.kill_server()


def test_a_pane_renamed_for_a_worker_whose_order_never_comes_removes_itself(pool) -> None:
    panes, tmux = pool
    wait_until(lambda: len(panes) == 2, 30, "two ready panes")
    taken = panes.take()
    assert taken is not None and tmux.rename_sessions([(taken.session, "t-w9", None)]) == [None]
    taken.conn.close()  # as when the supervisor dies between the rename and the order: its sockets close
    panes.stop()
    wait_until(lambda: not tmux.is_running() or tmux.sessions() == [], 30, "every pane gone")


def test_the_pool_sends_away_a_pane_it_does_not_know(pool, swarm_home: SwarmHome) -> None:
    panes, _ = pool
    for hello in (b"free t-w77\n", b"warm t-_warm99\n", b"nonsense\n"):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(b"\0" + panes.address.encode())
        conn.sendall(hello)
        conn.settimeout(30)
        assert conn.recv(16) == b"", f"{hello!r} was sent away"
        conn.close()


def test_an_order_with_a_nul_or_a_bad_name_is_refused() -> None:
    base = {"args": ["--script"], "cwd": Path("/tmp"), "exit_file": Path("/tmp/x")}
    assert Order(**base, env={"A": "b"}).encode()[4:].split(b"\0")[:4] == [b"w1", b"/tmp/x", b"/tmp", b"1"]
    for bad in (Order(**base, env={"A": "b\0c"}), Order(**base, env={"A=B": "c"}), Order(**base, unset=("",)),
                Order(args=["a\0b"], cwd=Path("/tmp"), exit_file=Path("/tmp/x"))):
        with pytest.raises(ValueError):
            bad.encode()


def test_the_supervisor_keeps_its_panes_started_ahead(swarm_home: SwarmHome) -> None:
    _init(swarm_home, warm_panes=3)
    assert run_cli("swarm", "up", "--home", str(swarm_home.root)).returncode == 0
    tmux = TmuxServer(swarm_home.tmux_socket)
    wait_until(lambda: len(_warm_sessions(tmux)) == 3, 30, "three panes started ahead")
    victim = _warm_sessions(tmux)[0]
    subprocess.run(["tmux", "-S", str(swarm_home.tmux_socket), "kill-session", "-t", f"={victim}"], check=True)
    wait_until(lambda: len(_warm_sessions(tmux)) == 3 and victim not in _warm_sessions(tmux), 30,
               "the pool to replace a pane killed under it")
    assert run_cli("swarm", "down", "--home", str(swarm_home.root)).returncode == 0
    wait_until(lambda: not _warm_sessions(tmux), 30, "no pane left after `swarm down`")


def test_a_worker_that_finishes_while_its_supervisor_is_down_is_not_lost(swarm_home: SwarmHome,
                                                                          tmp_path: Path) -> None:
    _init(swarm_home, warm_panes=1)
    home, gate, started = str(swarm_home.root), tmp_path / "gate", tmp_path / "started"
    os.mkfifo(gate)
    assert run_cli("swarm", "up", "--home", home).returncode == 0
    plan = write_plan(tmp_path / "plan.json", [{"id": "slow", "title": "slow", "description":
        f"touch {started}\ncat {gate} > /dev/null\necho FINISHED"}])
    assert run_cli("swarm", "run", str(plan), "--home", home).returncode == 0
    wait_until(started.exists, 30, "the worker to start")
    os.kill(wait_until(lambda: running_pid(swarm_home), 15, "the supervisor"), signal.SIGKILL)
    with open(gate, "w") as f:  # the worker finishes (DONE sent) while nobody supervises it
        f.write("go\n")
    worker = Ledger(swarm_home).task("slow").assignee
    wait_until(lambda: (swarm_home.run_dir / "exits" / str(worker)).exists(), 30, "the worker's end")
    assert run_cli("swarm", "up", "--home", home).returncode == 0
    ledger = Ledger(swarm_home)
    wait_until(lambda: ledger.task("slow").status == TaskStatus.DONE, 60, "its DONE read by the new supervisor")
    assert [a.outcome.value for a in ledger.task("slow").attempts] == ["done"], "done once, nothing redone"
    assert run_cli("swarm", "down", "--home", home).returncode == 0

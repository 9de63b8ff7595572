"""Ending a swarm: teardown ends every worker it started, whatever the environment says, with or without a
supervisor, after a crash and a change of `name`; interrupted runs say what still runs."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from protocol.task import TaskStatus
from swarmd.supervisor.daemon import running_pid, wait_exit
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.workers.tmux import TmuxServer
from swarmd.workers.warmpanes import WARM_MARK
from conftest import REPO, run_cli
from swarmkit import init_home, wait_until, write_plan


def _start_blocked_task(home: SwarmHome, tmp_path: Path, task: str = "hold") -> str:
    """Start the supervisor with one task whose worker blocks on a FIFO; return the worker's session."""
    gate = tmp_path / f"{task}.gate"
    os.mkfifo(gate)
    plan = write_plan(tmp_path / f"{task}.json", [{"id": task, "title": "blocks", "description": f"cat {gate}"}])
    assert run_cli("swarm", "up", "--home", str(home.root)).returncode == 0
    assert run_cli("swarm", "run", str(plan), "--home", str(home.root)).returncode == 0
    ledger = Ledger(home)
    wait_until(lambda: ledger.task(task).status == TaskStatus.IN_PROGRESS, timeout=30, what="the worker to start")
    return ledger.registry()[ledger.task(task).assignee].session  # type: ignore[index]


def _sigkill_supervisor(home: SwarmHome) -> None:
    pid = running_pid(home)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert wait_exit(pid, 10)


def test_teardown_ends_the_swarms_pane_whatever_pane_the_callers_tmux_names(swarm_home: SwarmHome,
                                                                             tmp_path: Path) -> None:
    """Pane ids are per server: the user's own TMUX_PANE=%1 once spared the swarm's pane %1."""
    init_home(swarm_home)
    session = _start_blocked_task(swarm_home, tmp_path)
    pane_id = TmuxServer(swarm_home.tmux_socket).panes()[session].pane_id
    foreign = {"TMUX": f"{tmp_path / 'users-own.sock'},4242,0", "TMUX_PANE": pane_id}
    down = run_cli("swarm", "down", "--teardown", "--home", str(swarm_home.root), env=foreign)
    assert down.returncode == 0, down.stderr
    assert session not in TmuxServer(swarm_home.tmux_socket).panes()


def test_teardown_works_without_a_supervisor(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home)
    session = _start_blocked_task(swarm_home, tmp_path)
    _sigkill_supervisor(swarm_home)
    down = run_cli("swarm", "down", "--teardown", "--home", str(swarm_home.root))
    assert down.returncode == 0, down.stderr
    assert "no supervisor was running" in down.stdout and "ended 1 worker sessions" in down.stdout
    assert session not in TmuxServer(swarm_home.tmux_socket).panes()
    assert Ledger(swarm_home).task("hold").status == TaskStatus.OPEN, "its task is back on the board"


def test_recovery_and_teardown_use_the_recorded_session_after_a_change_of_name(swarm_home: SwarmHome,
                                                                              tmp_path: Path) -> None:
    """After a SIGKILL and a new `name` in swarm.toml, recovery looked for sessions by the new name: the old
    workers ran on beside new attempts of their tasks, and teardown could not end them."""
    init_home(swarm_home)
    session = _start_blocked_task(swarm_home, tmp_path)
    _sigkill_supervisor(swarm_home)
    config = swarm_home.config_file.read_text().replace('name = "t"', 'name = "renamed"')
    swarm_home.config_file.write_text(config)
    assert run_cli("swarm", "up", "--home", str(swarm_home.root)).returncode == 0
    ledger = Ledger(swarm_home)
    wait_until(lambda: any(e.type == "supervisor_recovered" for e in ledger.events()), timeout=30,
               what="the supervisor to recover")
    recovered = next(e for e in ledger.events() if e.type == "supervisor_recovered")
    assert recovered.detail["adopted"] == ["hold"] and recovered.detail["reopened"] == []
    task = ledger.task("hold")
    assert len(task.attempts) == 1 and task.status == TaskStatus.IN_PROGRESS, "adopted, not started again"
    assert [s for s in TmuxServer(swarm_home.tmux_socket).panes() if WARM_MARK not in s] == [session]
    down = run_cli("swarm", "down", "--teardown", "--home", str(swarm_home.root))
    assert down.returncode == 0, down.stderr
    assert TmuxServer(swarm_home.tmux_socket).panes() == {}


def test_ctrl_c_on_run_wait_says_what_still_runs_and_how_to_resume(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home)
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    plan = write_plan(tmp_path / "plan.json", [{"id": "long", "title": "blocks", "description": f"cat {gate}"}])
    exe = Path(sys.executable).parent / "swarm"
    run = subprocess.Popen([str(exe), "run", str(plan), "--home", str(swarm_home.root), "--wait"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ledger = Ledger(swarm_home)
    wait_until(lambda: "long" in ledger.board() and ledger.task("long").status == TaskStatus.IN_PROGRESS,
               timeout=30, what="the task to start")
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    assert "long (w1)" in err and f"resume with: swarm run {plan} --wait" in err and "swarm down --teardown" in err
    assert "Traceback" not in err
    run_cli("swarm", "down", "--teardown", "--home", str(swarm_home.root))


def test_demo_cleans_up_on_sigterm_and_sighup(tmp_path: Path) -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        tmpdir = tmp_path / sig.name
        tmpdir.mkdir()
        demo = subprocess.Popen([sys.executable, "-m", "swarmd", "demo"], cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env={**os.environ, "TMPDIR": str(tmpdir)})
        homes = lambda: list(tmpdir.glob("swarm-demo-*/.swarm"))  # noqa: E731
        wait_until(lambda: homes() and TmuxServer(SwarmHome(homes()[0]).tmux_socket).panes(), timeout=60,
                   what="the demo's first workers")
        socket = SwarmHome(homes()[0]).tmux_socket
        demo.send_signal(sig)
        demo.communicate(timeout=60)
        assert not list(tmpdir.glob("swarm-demo-*")), f"{sig.name}: the demo's home is removed"
        assert not TmuxServer(socket).is_running(), f"{sig.name}: the demo's tmux server is gone"


def _plan_runs_to_done(home: SwarmHome, tmp_path: Path, env: dict[str, str] | None = None) -> None:
    init_home(home)
    plan = write_plan(tmp_path / "plan.json", [{"id": "one", "title": "quick", "description": "echo ran > ran.txt"}])
    result = run_cli("swarm", "run", str(plan), "--home", str(home.root), "--wait", "--timeout", "60s", env=env,
                     timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(Ledger(home).task("one").attempts) == 1


def test_a_socket_path_is_measured_in_bytes(tmp_path: Path) -> None:
    """A home under non-ASCII letters looked short in characters and was too long in bytes: every attempt
    failed on "File name too long"."""
    short = Path(tempfile.mkdtemp(prefix="sock-", dir="/tmp"))  # tmp_path's own length varies (pytest-xdist)
    base = len(str(short)) + len("/.swarm/run/tmux.sock") + 1
    letters = 100 - base  # as many as fit in 100 characters...
    assert letters > 10 and base + 2 * letters > 108, "...which is over the kernel's limit in bytes"
    home = SwarmHome(short / ("д" * letters) / ".swarm")
    try:
        _plan_runs_to_done(home, tmp_path)
        assert len(os.fsencode(home.tmux_socket)) <= 100
    finally:
        TmuxServer(home.tmux_socket).kill_server()
        shutil.rmtree(short)


def test_the_socket_fallback_fits_under_any_tmpdir(tmp_path: Path) -> None:
    """The fallback for a long home was made under $TMPDIR, never measured: a deep TMPDIR broke every attempt,
    and a process with another TMPDIR looked for the swarm's tmux server in the wrong place."""
    deep_tmp = tmp_path / ("t" * 120)
    deep_tmp.mkdir()
    home = SwarmHome(tmp_path / ("h" * 100) / ".swarm")
    try:
        _plan_runs_to_done(home, tmp_path, env={"TMPDIR": str(deep_tmp)})
        assert len(os.fsencode(home.tmux_socket)) <= 100
    finally:
        TmuxServer(home.tmux_socket).kill_server()

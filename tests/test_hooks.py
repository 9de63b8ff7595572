"""The on_task_done hook: a hook that starts a background command, or runs long, never holds up the swarm."""

import os
from pathlib import Path

from protocol.event import EventType
from protocol.task import TaskStatus
from swarmd.supervisor.daemon import running_pid
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from conftest import run_cli
from swarmkit import init_home, statuses, wait_until, write_plan


def _alive(pids_file: Path) -> list[int]:
    """The pids listed in `pids_file` (one a line, written by the hooks) that are still running."""
    alive = []
    for line in pids_file.read_text().split():
        try:
            os.kill(int(line), 0)
        except ProcessLookupError:
            continue
        alive.append(int(line))
    return alive


def _configure(home: SwarmHome, hook: str, timeout: float = 600) -> None:
    with home.config_file.open("a") as config:
        config.write(f"on_task_done = {hook!r}\nhook_timeout = {timeout}\n")


def test_a_hook_that_starts_a_background_command_neither_times_out_nor_stalls_validations(
        swarm_home: SwarmHome, tmp_path: Path) -> None:
    """`sleep 200 &` held the hook's output pipe: a false "timed out after 120 s", and with four such hooks
    every validation waited behind them on one shared pool."""
    init_home(swarm_home, max_workers=3)
    _configure(swarm_home, "sleep 2017 & echo $! >> hook-pids.txt; echo hook ran for {task_id} >> hooks.txt",
               timeout=100)
    ids = [f"t{i}" for i in range(6)]
    plan = write_plan(tmp_path / "plan.json", [
        {"id": i, "title": "quick", "description": f"echo {i} > {i}.txt",
         "validation": {"checks": [{"kind": "files_exist", "paths": [f"{i}.txt"]}]}} for i in ids])
    result = run_cli("swarm", "run", str(plan), "--home", str(swarm_home.root), "--wait", "--timeout", "60s",
                     timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(statuses(swarm_home).values()) == {TaskStatus.DONE}
    hooks_file = swarm_home.root.parent / "hooks.txt"
    wait_until(lambda: hooks_file.exists() and len(hooks_file.read_text().splitlines()) == 6, timeout=30,
               what="every hook to run")
    summaries = [e.summary for e in Ledger(swarm_home).events() if e.type == EventType.CUSTOM]
    assert not [s for s in summaries if "on_task_done" in s], summaries
    pids = swarm_home.root.parent / "hook-pids.txt"
    wait_until(lambda: not _alive(pids), timeout=30, what="the hooks' background commands to end")


def test_stopping_the_supervisor_never_waits_for_a_hook(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home)
    _configure(swarm_home, "sleep 3017 & echo $! > hook-pids.txt; wait")
    plan = write_plan(tmp_path / "plan.json", [{"id": "a", "title": "quick", "description": "true"}])
    assert run_cli("swarm", "up", "--home", str(swarm_home.root)).returncode == 0
    assert run_cli("swarm", "run", str(plan), "--home", str(swarm_home.root)).returncode == 0
    pids = swarm_home.root.parent / "hook-pids.txt"
    wait_until(lambda: pids.exists() and _alive(pids), timeout=60, what="the hook to start")
    down = run_cli("swarm", "down", "--home", str(swarm_home.root), timeout=60)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "kill -9" not in down.stderr
    assert running_pid(swarm_home) is None
    wait_until(lambda: not _alive(pids), timeout=30, what="the hook to be killed")

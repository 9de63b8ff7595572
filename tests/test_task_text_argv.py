"""A task's text never appears on a command line: any local user reads argv (`ps`, /proc/*/cmdline), and more than
128 KiB in one argument cannot start at all ("Argument list too long"). A real swarm runs tasks with a secret in
their title and description, one of them over 128 KiB, while every process's argv is scanned until they settle.
"""

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from protocol.task import TaskStatus
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from agentclis import RefusingModel, agent_env
from swarmkit import init_home, statuses, wait_until, write_plan

BIG = 160 * 1024  # bytes of task text: over Linux's 128 KiB limit on one argument
SETTLED = {TaskStatus.DONE, TaskStatus.BLOCKED}


class ArgvScanner(threading.Thread):
    """Reads every process's argv again and again until stopped; keeps each one that holds `needle`."""

    def __init__(self, needle: str) -> None:
        super().__init__(name="argv-scanner", daemon=True)
        self.needle = needle.encode()
        self.leaks: dict[str, str] = {}
        self.scans = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    argv = Path(entry.path, "cmdline").read_bytes()
                except OSError:  # gone since the listing
                    continue
                if self.needle in argv:
                    self.leaks[entry.name] = f"pid {entry.name}: {argv[:300]!r}"
            self.scans += 1
            self.stopped.wait(0.005)

    def scan_twice_more(self) -> None:
        """Return once two whole scans have run from now: whatever lives now has been looked at."""
        target = self.scans + 2
        wait_until(lambda: self.scans >= target, timeout=60, what="two more scans of /proc")


def settled(home: SwarmHome, task: str) -> bool:
    return statuses(home).get(task) in SETTLED


def run_scanned(home: SwarmHome, plan: Path, secret: str, env: dict[str, str],
                hold_until_scanned: Callable[[ArgvScanner], None]) -> ArgvScanner:
    """Run the plan to its end under an argv scanner; `hold_until_scanned` lets the held agents go once the
    scanner has seen them. Returns the stopped scanner."""
    scanner = ArgvScanner(secret)
    scanner.start()
    swarm = [str(Path(sys.executable).parent / "swarm"), "run", str(plan), "--home", str(home.root), "--wait",
             "--timeout", "180s"]
    proc = subprocess.Popen(swarm, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        hold_until_scanned(scanner)
        out, _ = proc.communicate(timeout=240)
    finally:
        scanner.stopped.set()
        scanner.join()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert not scanner.leaks, "the task's text was on a command line:\n" + "\n".join(scanner.leaks.values())
    assert scanner.scans >= 2, out
    return scanner


def agent_tasks(secret: str, profile: str) -> list[dict]:
    big = f"start-big-{secret}\n" + "Write the module as the spec says. " * (BIG // 35) + f"\nend-big-{secret}"
    return [
        {"id": "small", "title": f"title-{secret}", "description": f"small-{secret}: say hello",
         "profile": profile, "max_attempts": 1},
        {"id": "big", "title": "a long spec", "description": big, "profile": profile, "max_attempts": 1},
    ]


def test_task_text_is_on_no_command_line_of_a_script_worker(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home)
    secret = f"secret{uuid.uuid4().hex}"
    fifos = {name: tmp_path / f"{name}.fifo" for name in ("small", "big")}
    for fifo in fifos.values():
        os.mkfifo(fifo)
    # Each script waits on its fifo (a shell builtin reads it: no process of its own), so it is alive while scanned.
    script = "# {secret}\nread go < {fifo}\nmkdir -p out && echo ok > out/{name}\n"
    tasks = [{"id": name, "title": f"title-{secret}", "max_attempts": 1,
              "description": script.format(secret=secret, fifo=fifo, name=name) + ("# padding\n" * (BIG // 10)
                                                                                    if name == "big" else ""),
              "validation": {"checks": [{"kind": "files_exist", "paths": [f"out/{name}"]}]}}
             for name, fifo in fifos.items()]
    plan = write_plan(tmp_path / "plan.json", tasks)

    def release(scanner: ArgvScanner) -> None:
        for name, fifo in fifos.items():
            writer: list[int] = []
            wait_until(lambda: _open_writer(fifo, writer) or settled(swarm_home, name), timeout=120,
                       what=f"task {name}'s script to wait on its fifo")
            scanner.scan_twice_more()
            for fd in writer:
                os.write(fd, b"go\n")
                os.close(fd)

    run_scanned(swarm_home, plan, secret, {}, release)
    assert statuses(swarm_home) == {"small": TaskStatus.DONE, "big": TaskStatus.DONE}


def _open_writer(fifo: Path, opened: list[int]) -> bool:
    """Open the fifo's write end into `opened` if a reader waits on it; whether one did."""
    try:
        opened.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:  # ENXIO: no reader yet
        return False
    return True


@pytest.mark.parametrize("profile", ["claude", "codex"])
def test_task_text_is_on_no_command_line_of_an_agent_worker(profile: str, agent_clis: dict[str, Path],
                                                            swarm_home: SwarmHome, tmp_path: Path) -> None:
    """The real CLI, started by the built-in profile, reads the whole prompt (over 128 KiB too) and sends it to
    a model on 127.0.0.1 that holds its answer until the scanner has seen the agent, then refuses it."""
    init_home(swarm_home)
    secret = f"secret{uuid.uuid4().hex}"
    plan = write_plan(tmp_path / "plan.json", agent_tasks(secret, profile))
    with RefusingModel().running() as model:
        def release(scanner: ArgvScanner) -> None:
            for name, marker in (("small", f"small-{secret}"), ("big", f"end-big-{secret}")):
                wait_until(lambda: model.received(marker) or settled(swarm_home, name), timeout=120,
                           what=f"task {name}'s prompt to reach the model")
            scanner.scan_twice_more()
            model.release.set()

        run_scanned(swarm_home, plan, secret, agent_env(tmp_path / "agents", model.url), release)
        board = Ledger(swarm_home).board()
        reasons = {task: board[task].attempts[-1].reason for task in ("small", "big")}
        assert "Argument list too long" not in "".join(reasons.values()), reasons
        assert model.received(f"title-{secret}") and model.received(f"small-{secret}"), "the prompt reached the agent"
        assert model.received(f"start-big-{secret}") and model.received(f"end-big-{secret}"), \
            "the whole prompt over 128 KiB reached the agent"

"""Shared fixtures: every test runs with a private HOME and no inherited tmux or swarm environment."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmd.home import SwarmHome
from swarmd.supervisor.daemon import running_pid, wait_exit
from agentclis import MISSING, find_clis
from modelserver import model_server  # noqa: F401 - the scripted model fixture, for every test module
from natskit import nats_server  # noqa: F401 - a real NATS server with JetStream, for every test module

REPO = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", help="run the long fault and fuzz campaigns")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="soak test: run with --soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's home directory, default tmux server or swarm."""
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    for var in ("TMUX", "TMUX_PANE", "SWARM_HOME", "SWARM_AGENT", "SWARM_ROLE", "SWARM_TASK"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def busy_cores() -> Iterator[None]:
    """Both cores (every core) kept busy by spinning processes for the test's length: load, made, not assumed."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        yield
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait()


@pytest.fixture
def home_dir(tmp_path: Path) -> Path:
    """A path for a swarm (or bare agentmail) home that does not exist yet."""
    return tmp_path / "home"


@pytest.fixture
def swarm_home(home_dir: Path) -> Iterator[SwarmHome]:
    """A swarm home whose supervisor daemon and private tmux server, if the test left them running, are killed
    afterwards (a daemon left behind would go on using the machine while later tests run)."""
    home = SwarmHome(home_dir)
    yield home
    pid = running_pid(home)
    if pid and pid > 0:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_exit(pid, 10)
    socket = home.tmux_socket
    if socket.exists() and shutil.which("tmux"):
        subprocess.run(["tmux", "-S", str(socket), "kill-server"], capture_output=True, check=False)
    _kill_mentioning(str(socket))  # a tmux call the killed daemon had under way starts a server after kill-server


def pids_mentioning(text: str) -> list[int]:
    """The processes (but this one) whose command line contains `text`."""
    needle, found = text.encode(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            with contextlib.suppress(OSError):
                if needle in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
    return found


def _kill_mentioning(text: str) -> None:
    """SIGKILL every process of ours whose command line contains `text`."""
    for pid in pids_mentioning(text):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def agent_clis() -> dict[str, Path]:
    """The pinned real CLIs (`claude`, `codex`) from tests/node_modules; skips where they are not installed."""
    found = find_clis()
    if found is None:
        pytest.skip(MISSING)
    return found


def run_cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None,
            timeout: float = 60, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a console script of this package (`agentmail` or `swarm`) as a real process (in `cwd` if given)."""
    exe = Path(sys.executable).parent / args[0]
    return subprocess.run([str(exe), *args[1:]], capture_output=True, text=True, input=stdin, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=timeout, check=False)

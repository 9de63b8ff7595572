"""`swarm attach` to a worker on a host (ssh when the host gives a destination, else its agent's terminal relay),
driven in a real pty against a real host agent and NATS server on loopback, every login held to its permissions."""

import fcntl
import os
import re
import shlex
import signal
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import run_cli
from hostkit import HostedSwarm, running
from swarmd.home import SwarmHome
from swarmd.hosts.attach import TermClient
from swarmd.hosts.logins import write_logins
from swarmd.hosts.names import HostError
from swarmd.ledger.log import Ledger
from swarmd.operate import Operator
from swarmkit import wait_until, write_plan

SWARM = str(Path(sys.executable).parent / "swarm")
GATED = "echo hello from $SWARM_AGENT; while [ ! -e {gate} ]; do sleep 0.05; done"
ESCAPES = re.compile(rb"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][0-9A-B]|[=>78M])")


class Terminal:
    """A process run on the slave side of a pty this test owns (rows x cols); what it draws is gathered."""

    def __init__(self, argv: list[str], rows: int = 30, cols: int = 100) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.saved = termios.tcgetattr(slave)
        self.slave = slave
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                     env={**os.environ, "TERM": "xterm-256color"})
        self.drawn = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.drawn += data

    def text(self) -> str:
        """What it drew, escapes left out."""
        return ESCAPES.sub(b"", bytes(self.drawn)).decode(errors="replace")

    def resize(self, rows: int, cols: int) -> None:
        """What a terminal emulator does when its window changes: the pty's size, then SIGWINCH."""
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc.send_signal(signal.SIGWINCH)

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        os.close(self.slave)
        os.close(self.master)


def window_size(socket: Path, session: str) -> str:
    """COLSxROWS of the session's window (the status line takes a row of the client's)."""
    return subprocess.run(["tmux", "-S", str(socket), "display-message", "-p", "-t", f"={session}:",
                           "#{window_width}x#{window_height}"], capture_output=True, text=True).stdout.strip()


def capture(socket: Path, session: str) -> str:
    return subprocess.run(["tmux", "-S", str(socket), "capture-pane", "-p", "-t", f"={session}:"],
                          capture_output=True, text=True).stdout


@pytest.fixture
def guarded(tmp_path: Path, swarm_home: SwarmHome) -> Iterator[HostedSwarm]:
    """Host h1 on loopback, the NATS server holding every login to its permissions (`swarm logins`)."""
    swarm = HostedSwarm(None, tmp_path, swarm_home, logins=write_logins(tmp_path / "logins", swarm="t",
                                                                        hosts=["h1"]).config.parent)
    try:
        yield swarm
    finally:
        swarm.close()


def test_attach_reaches_a_remote_worker_through_its_hosts_relay_and_detaches_cleanly(guarded: HostedSwarm) -> None:
    loopback = guarded
    loopback.config(max_workers=1, local_workers=False)
    loopback.join("h1", slots=1, ssh="ops@h1.example")
    plan = write_plan(loopback.root / "plan.json", [{"id": "job", "title": "job", "max_attempts": 1,
                                                     "description": GATED.format(gate=loopback.root / "never")}])
    home = ["--home", str(loopback.home.root)]
    assert run_cli("swarm", "run", str(plan), *home).returncode == 0
    ledger = Ledger(loopback.home)
    worker = wait_until(lambda: ledger.task("job").status == "in_progress" and ledger.task("job").assignee, 60,
                        "the job to run on h1")
    session, socket = f"t-{worker}", loopback.tmux("h1")
    wait_until(lambda: f"hello from {worker}" in capture(socket, session), 30, "the worker's words on h1")
    wait_until(lambda: ledger.registry()[worker].metadata.get("remote_tmux"), 30, "h1's report of the start")

    # The host gave an ssh destination: that is the way, unless the relay is asked for.
    remote = shlex.join(["tmux", "-S", str(socket), "attach-session", "-t", f"={session}"])
    shown = run_cli("swarm", "attach", worker, "--print", *home)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == shlex.join(["ssh", "-t", "--", "ops@h1.example", remote])
    operator = Operator(loopback.home)  # the library API `swarm attach` is thin over
    relayed = operator.attach_plan(worker, relay=True)
    assert relayed.via == "relay" and relayed.argv == shlex.split(remote) and "on host h1" in relayed.describe()
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(HostError, match="needs a terminal"):
            TermClient(loopback.home, operator.config, "h1", worker, stdin=read_end)
    finally:
        os.close(read_end)
        os.close(write_end)

    terminal = Terminal([SWARM, "attach", worker, "--relay", *home])
    try:
        wait_until(lambda: f"hello from {worker}" in terminal.text(), 30, "h1's pane drawn in this terminal")
        terminal.type(b"typed-through-the-relay")
        wait_until(lambda: "typed-through-the-relay" in capture(socket, session), 30, "the keys in h1's pane")
        wait_until(lambda: "typed-through-the-relay" in terminal.text(), 30, "the pane's echo drawn here")
        wait_until(lambda: window_size(socket, session) == "100x29", 30, "h1's window at this terminal's size")
        terminal.resize(25, 90)
        wait_until(lambda: window_size(socket, session) == "90x24", 30, "h1's window following a resize")
        terminal.type(b"\x02d")  # tmux's prefix, then d: detach
        assert terminal.proc.wait(30) == 0, terminal.text()[-2000:]
        assert "detached" in terminal.text()
        assert termios.tcgetattr(terminal.slave) == terminal.saved  # the terminal is as it was
    finally:
        terminal.close()
    assert running(socket, session)  # the worker goes on
    assert ledger.task("job").status == "in_progress"
    wait_until(lambda: not any(remote in line for line in subprocess.run(
        ["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()), 30, "the relay's tmux client gone")

    assert run_cli("swarm", "kill", worker, *home).returncode == 0
    wait_until(lambda: not running(socket, session), 30, "h1 to end the killed worker")
    master, slave = os.openpty()
    try:
        with pytest.raises(HostError, match=f"host h1: ({worker} has ended on host h1|no worker)"):
            TermClient(loopback.home, operator.config, "h1", worker, stdin=slave, stdout=slave).run()
    finally:
        os.close(master)
        os.close(slave)

"""The supervisor as a daemon: one per home, found through its lock and pid file, stopped by SHUTDOWN mail."""

import os
import select
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from collections.abc import Iterator

from filelock import FileLock, Timeout

from agentmail import PostOffice
from protocol.messages import MessageType, make_message
from swarmd.errors import NotRunning, SwarmError
from swarmd.home import SwarmHome

START_TIMEOUT = 15.0
STOP_TIMEOUT = 20.0


def _lock(home: SwarmHome) -> FileLock:
    return FileLock(str(home.run_dir / "supervisor.lock"), timeout=0, mode=0o600)


def running_pid(home: SwarmHome) -> int | None:
    """The pid of this home's supervisor, or None. The lock, not the pid file, says whether it runs."""
    if not home.run_dir.exists():
        return None
    lock = _lock(home)
    try:
        lock.acquire()
    except Timeout:
        try:
            return int(home.pid_file.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return -1  # running, pid file not written yet
    lock.release()
    return None


@contextmanager
def supervisor_lock(home: SwarmHome) -> Iterator[None]:
    """Held for the supervisor's whole life; a second supervisor on the same home is refused."""
    lock = _lock(home)
    try:
        lock.acquire()
    except Timeout:
        raise SwarmError(f"a supervisor is already running for {home.root} (pid {running_pid(home)})") from None
    fd = os.open(home.pid_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()}\n")
    try:
        yield
    finally:
        home.pid_file.unlink(missing_ok=True)
        lock.release()


def start_daemon(home: SwarmHome, max_workers: int | None = None) -> int:
    """Start `swarm up --foreground` in the background, detached; return its pid once it holds the lock."""
    if (pid := running_pid(home)) is not None:
        raise SwarmError(f"a supervisor is already running for {home.root} (pid {pid})")
    home.ensure_dirs()
    argv = [sys.executable, "-m", "swarmd", "up", "--foreground", "--home", str(home.root)]
    if max_workers:
        argv += ["--max-workers", str(max_workers)]
    log_path = home.logs_dir / "supervisor.log"
    with open(log_path, "ab") as log:
        os.chmod(log_path, 0o600)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=home.root.parent)
    deadline = time.monotonic() + START_TIMEOUT
    while (pid := running_pid(home)) in (None, -1):
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise SwarmError(f"the supervisor exited at start (code {proc.returncode}): {tail[0]}")
        if time.monotonic() > deadline:
            raise SwarmError(f"the supervisor did not start within {START_TIMEOUT:g} s; see {log_path}")
        wait_exit(proc.pid, 0.02)
    return pid


def stop_daemon(home: SwarmHome, timeout: float = STOP_TIMEOUT) -> int:
    """Ask the supervisor to stop (SHUTDOWN mail), then SIGTERM if it has not within `timeout`."""
    pid = running_pid(home)
    if pid is None or pid < 0:
        raise NotRunning(f"no supervisor is running for {home.root}")
    PostOffice(home.root).send(make_message(MessageType.SHUTDOWN, "operator", "supervisor", {"reason": "swarm down"}))
    if not wait_exit(pid, timeout):
        os.kill(pid, signal.SIGTERM)
        if not wait_exit(pid, 5.0):
            raise SwarmError(f"the supervisor (pid {pid}) did not stop; kill it with: kill -9 {pid}")
    return pid


def wait_exit(pid: int, timeout: float | None) -> bool:
    """Wait until process `pid` ends (a pidfd wakes us; no polling loop); True if it did."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(fd)

"""The supervisor as a daemon: one per home, found through its lock and pid file, stopped by SHUTDOWN mail."""

import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from agentmail import PostOffice
from protocol.messages import MessageType, make_message
from swarmd.errors import NotRunning, SwarmError
from swarmd.home import SwarmHome

START_TIMEOUT = 15.0
STOP_TIMEOUT = 20.0


# The supervisor holds a POSIX record lock on run/supervisor.lock for its whole life. Unlike flock, such a lock
# can be tested without taking it (F_GETLK), and the kernel names the holder's pid: a probe never gets in the
# way of a supervisor that is starting, and a pid is never stale.
_FLOCK = "hhqqi"  # struct flock: l_type, l_whence, l_start, l_len, l_pid


def _open_lock(home: SwarmHome) -> int:
    return os.open(home.run_dir / "supervisor.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


def running_pid(home: SwarmHome) -> int | None:
    """The pid of this home's supervisor, or None."""
    if not (home.run_dir / "supervisor.lock").exists():
        return None
    fd = _open_lock(home)
    try:
        query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        kind, _, _, _, pid = struct.unpack(_FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, query))
    finally:
        os.close(fd)
    return None if kind == fcntl.F_UNLCK else pid


@contextmanager
def supervisor_lock(home: SwarmHome) -> Iterator[None]:
    """Held for the supervisor's whole life; a second supervisor on the same home is refused."""
    fd = _open_lock(home)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise SwarmError(f"a supervisor is already running for {home.root} (pid {running_pid(home)})") from None
    pid_fd = os.open(home.pid_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(pid_fd, "w") as f:  # for people; the lock is what counts
        f.write(f"{os.getpid()}\n")
    try:
        yield
    finally:
        home.pid_file.unlink(missing_ok=True)
        os.close(fd)  # releases the lock


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
    while (pid := running_pid(home)) is None:
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
    if pid is None:
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

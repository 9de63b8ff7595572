"""Children for the crash tests: forked processes that send or append until they are killed.

A child reports a message or event as ACCEPTED (one line on a pipe) only after send()/append() returned;
a pipe write outlives the writer's death. The parent kills the child with SIGKILL, either at a named crash
point (`protocol.faults`, armed in the child) or after a random delay, and then checks the files.
"""

from __future__ import annotations

import fcntl
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from agentmail import PostOffice
from protocol import MessageType, faults, make_message
from protocol.event import EventType
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger

INBOX = "inbox"
Body = Callable[[int], None]


def fork_child(body: Body, crash_at: str | None = None) -> tuple[int, int]:
    """Fork a child that arms `crash_at` and runs body(report_fd); return (pid, read end of its reports)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 1
        try:
            os.close(read_end)
            faults.arm(crash_at)
            body(write_end)
            code = 0
        except BaseException:
            traceback.print_exc(file=sys.stderr)
        finally:
            os._exit(code)
    os.close(write_end)
    return pid, read_end


def reap(pid: int, read_end: int) -> tuple[int, list[str]]:
    """Wait for the child; return (its wait status, the lines it reported before it died)."""
    chunks = []
    while chunk := os.read(read_end, 1 << 16):
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    return status, b"".join(chunks).decode().splitlines()


def kill_after(pid: int, read_end: int, reports: int, delay: float) -> tuple[int, list[str]]:
    """Let the child report `reports` lines (or die), wait `delay` seconds more, SIGKILL it and reap it."""
    pending = b""
    while pending.count(b"\n") < reports and (chunk := os.read(read_end, 1 << 16)):
        pending += chunk
    deadline = time.perf_counter() + delay
    while time.perf_counter() < deadline:  # a spin: sleep() cannot place a kill within microseconds
        pass
    os.kill(pid, signal.SIGKILL)
    status, rest = reap(pid, read_end)
    return status, pending.decode().splitlines() + rest


def killed(status: int) -> bool:
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def lock_is_free(path: Path) -> bool:
    """Whether nobody holds the flock on `path` (a dead holder's lock must have gone with it)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def filler(rng: random.Random, largest: int) -> str:
    return "x" * rng.randint(10, largest)


# -- bodies ------------------------------------------------------------------------------------------------


def sender(home: Path, limit: int, largest: int, seed: int) -> Body:
    """Send up to `limit` durable messages of random size to the inbox, reporting each id once sent."""
    def body(report: int) -> None:
        rng = random.Random(seed)
        po = PostOffice(home, durable=True)
        for i in range(limit):
            message = make_message(MessageType.PROGRESS, "victim", INBOX,
                                   {"task": "t", "step": str(i), "status": filler(rng, largest)})
            po.send(message)
            os.write(report, f"{message.id}\n".encode())
    return body


def appender(home: Path, limit: int, largest: int, seed: int) -> Body:
    """Append up to `limit` durable events of random size, reporting `<seq> <summary>` once appended."""
    def body(report: int) -> None:
        rng = random.Random(seed)
        ledger = Ledger(SwarmHome(home), durable=True)
        tag = os.urandom(6).hex()  # unique per child, whatever the seed
        for i in range(limit):
            summary = f"{tag}-{i}"
            event = ledger.append(EventType.PROGRESS, "victim", summary=summary, filler=filler(rng, largest))
            os.write(report, f"{event.seq} {summary}\n".encode())
    return body


@contextmanager
def scratch_dir(fallback: Path) -> Iterator[Path]:
    """A private directory for crash homes: under /dev/shm (tmpfs, where fsync costs nothing and a SIGKILL
    tests the same steps: a killed process loses no page cache) when usable, else under `fallback`."""
    shm = Path("/dev/shm")
    parent = shm if shm.is_dir() and os.access(shm, os.W_OK) else fallback
    path = Path(tempfile.mkdtemp(prefix="swarmd-crash-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)

"""Commands the supervisor runs itself: validation checks and the `on_task_done` hook (shell commands), and
outside programs such as `ol` and `bd` (argv, through `wait_or_kill`, left to finish when the supervisor stops).

Each runs under /bin/sh in a process group of its own with its output in a temporary file, never a pipe: a
background grandchild (`sleep 200 &`) that keeps the output open cannot keep the caller waiting once the
shell has exited. When the shell ends, or its timeout passes, the whole group is killed, so nothing it
started outlives it; `kill_all` ends every group still running (the supervisor is stopping).
"""

import os
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

OUTPUT_TAIL_BYTES = 2048

# Process groups of the commands running now, so that a stopping supervisor leaves none behind.
_running: set[int] = set()
_running_lock = threading.Lock()


@dataclass(frozen=True)
class ShellResult:
    """How a command ended: its exit code (None if it timed out and was killed) and its output's tail."""

    returncode: int | None
    tail: str

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def run_shell(command: str, *, cwd: Path, env: dict[str, str], timeout: float,
              tail_bytes: int = OUTPUT_TAIL_BYTES, stdin: bytes | None = None) -> ShellResult:
    """Run `command` with /bin/sh in `cwd` with exactly `env`, for at most `timeout` seconds, with `stdin`
    (from a temporary file, never a pipe it could leave unread) or nothing on its standard input.

    Returns the exit code and the last `tail_bytes` of its stdout and stderr (interleaved, decoded as UTF-8
    with replacement). Raises OSError if the shell cannot be started.
    """
    with tempfile.TemporaryFile() as output, tempfile.TemporaryFile() as given:
        given.write(stdin or b"")
        given.seek(0)
        proc = subprocess.Popen(command, shell=True, cwd=cwd, env=env, stdin=given if stdin is not None
                                else subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                start_new_session=True)
        timed_out = wait_or_kill(proc, timeout)
        tail = _tail(output, tail_bytes)
    return ShellResult(None if timed_out else proc.returncode, tail)


def wait_or_kill(proc: subprocess.Popen[bytes], timeout: float, *, stop_kills: bool = True) -> bool:
    """Wait up to `timeout` seconds for `proc` (started with `start_new_session=True`, so it leads a process
    group of its own), then kill its whole group: on timeout, and whatever it left running if it exited. With
    `stop_kills`, `kill_all` ends it while it runs (a check or hook); without, a stopping supervisor lets it
    finish within its timeout (a short outside command whose effect should not be cut in half). True if it
    timed out."""
    if stop_kills:
        with _running_lock:
            _running.add(proc.pid)
    try:
        proc.wait(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        with _running_lock:
            _running.discard(proc.pid)
    _kill_group(proc.pid)
    proc.wait()
    return timed_out


def kill_all() -> None:
    """Kill every command still running (the supervisor is stopping: a restart checks again)."""
    with _running_lock:
        groups = list(_running)
    for pgid in groups:
        _kill_group(pgid)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the group is already empty


def _tail(output: IO[bytes], limit: int) -> str:
    size = output.seek(0, os.SEEK_END)
    output.seek(max(0, size - limit))
    return output.read().decode("utf-8", errors="replace")

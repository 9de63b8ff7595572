"""Running an outside program (`ol`, `bd`) safely: argv only, its own process group, a timeout."""

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from swarmd.errors import SwarmError
from swarmd.supervisor.shell import wait_or_kill

TOOL_TIMEOUT = 60.0  # seconds
OUTPUT_LIMIT = 1024 * 1024  # bytes of stdout kept (JSON listings); stderr is cut to its tail


class ToolError(SwarmError):
    """An outside program that could not be run, or whose answer cannot be understood."""


@dataclass(frozen=True)
class ToolResult:
    """What a program said: `code` is its exit status (None: killed after the timeout, or not started)."""

    argv: tuple[str, ...]
    code: int | None
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.code == 0

    def describe(self) -> str:
        """One line saying how it ended, for a feed event or a refusal."""
        first = self.stderr.strip().splitlines()[:1]
        return f"`{' '.join(self.argv)}` {ending(self.code)}" + (f": {first[0]}" if first else "")


def ending(code: int | None) -> str:
    """How a program ended, in a few words: `exit N`, or `did not finish` (None: killed, or never started)."""
    return "did not finish" if code is None else f"exit {code}"


def on_path(name: str) -> bool:
    """Whether `name` is an executable on $PATH."""
    return shutil.which(name) is not None


def run_tool(argv: list[str], *, cwd: Path | None = None, timeout: float = TOOL_TIMEOUT) -> ToolResult:
    """Run `argv` (never through a shell) in a new session, so that on timeout its whole process group is
    killed (see swarmd.supervisor.shell.wait_or_kill; a stopping supervisor lets it finish). Output goes to temporary files:
    a grandchild that keeps a pipe open cannot keep us waiting."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True)
        except OSError as exc:
            return ToolResult(tuple(argv), None, "", f"cannot start {argv[0]}: {exc.strerror or exc}")
        code = None if wait_or_kill(proc, timeout, stop_kills=False) else proc.returncode
        stdout, stderr = _read(out, OUTPUT_LIMIT), _read(err, OUTPUT_LIMIT)
    if code is None:
        stderr = (stderr + f"\nkilled after {timeout:g} s").strip()
    return ToolResult(tuple(argv), code, stdout, stderr[-4096:])


def _read(f: IO[bytes], limit: int) -> str:
    f.seek(0)
    return f.read(limit).decode("utf-8", errors="replace")

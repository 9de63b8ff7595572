"""A reader that goes away (`swarm status | head -1`) ends a command quietly, as it ends `cat` or `git log`:
with the standard library alone, for the command lines' lean paths as for their click apps."""

import os
import sys
from typing import NoReturn

# What a shell reports for a process ended by SIGPIPE (128 + 13), as `yes | head -1` leaves `yes`.
EXIT_BROKEN_PIPE = 141


def quiet_broken_pipe() -> NoReturn:
    """Exit 141 without a word once stdout's reader has gone; stdout is pointed at /dev/null first so that
    the interpreter's last flush does not complain either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # no real stdout to point anywhere (a test runner's buffer)
    finally:
        os.close(devnull)
    sys.exit(EXIT_BROKEN_PIPE)


def write_out(data: bytes) -> None:
    """Write `data` to stdout and flush it; a reader that has gone ends the process quietly (exit 141)."""
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    except BrokenPipeError:
        quiet_broken_pipe()

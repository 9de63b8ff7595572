"""A worker pane's first process when the supervisor runs a fork server (`swarmd.workers.forkserver`).

    python -I -S paneclient.py EXIT_FILE WAKE_FILE ADDRESS -- WRAPPER_ARGS...

Started by the pane's shell with `exec`, so it is the pane's process and its session's leader. It asks the fork
server at ADDRESS (an abstract Unix socket) to run `python -m swarmd.worker WRAPPER_ARGS...` for it, handing over
its terminal (descriptors 0, 1 and 2, by SCM_RIGHTS), its working directory, umask, and environment; then it
waits. The server's child for this worker makes itself a session leader and takes the terminal as its
controlling terminal, which this process gives up first (TIOCNOTTY), so Ctrl-C, a resize and a hang-up reach
the worker and its agent straight from the kernel, as they would if they had been started here. When the
worker ends, this process records its exit status in EXIT_FILE, wakes the supervisor by writing WAKE_FILE,
and exits with the same status (128 + N for a worker killed by signal N, as a shell reports it), so the
pane's death and its status keep their meaning.

When no fork server answers (not started yet, just died, or run by another user), it starts the wrapper
itself, as a child in its own terminal, and waits for it the same way: only slower.

It imports nothing but interpreter built-ins and two small C modules, and runs under `-I -S` (no site, no
user paths): a pane starts in about 20 ms of CPU instead of the wrapper's 110-150 ms. The idea is that of
Android's zygote and of `multiprocessing`'s forkserver: fork a process that has already imported, instead of
starting a new one.

Wire format (client to server, one message): a 4-byte big-endian length, then NUL-separated fields: the
protocol version `1`, the umask in octal, the number of wrapper arguments, the arguments, then the
environment as `KEY=VALUE` entries; four descriptors ride on it: stdin, stdout, stderr and the working
directory. Server to client: the line `pid N` (the worker's process group), then `exit N` or `signal N`.
"""

import _signal
import _socket
import fcntl
import posix
import sys
import termios
import time

STARTED = time.time_ns()  # this pane's process began: the worker's ACCEPTED says so (SWARM_PANE_STARTED)

PROTOCOL = b"1"
FORWARDED = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGWINCH)
USAGE = "usage: python -I -S paneclient.py EXIT_FILE WAKE_FILE ADDRESS -- WRAPPER_ARGS..."


class Waiter:
    """The worker's process group, once the server has said it, and the signals that came before."""

    def __init__(self) -> None:
        self.group = 0
        self.pending: list[int] = []

    def forward(self, signum: int, _frame: object) -> None:
        """A signal sent to the pane's process goes on to the worker's group (kept until that is known)."""
        if self.group:
            _kill_group(self.group, signum)
        else:
            self.pending.append(signum)

    def known(self, group: int) -> None:
        self.group = group
        for signum in self.pending:
            _kill_group(group, signum)
        self.pending.clear()


class _HangUpOnce:
    """Pass a hang-up on to our own process group (which includes us) once: the flag is set before the
    signal goes, so the copy this process receives does nothing."""

    def __init__(self) -> None:
        self.done = False

    def handle(self, signum: int, _frame: object) -> None:
        if not self.done:
            self.done = True
            _kill_group(0, signum)


def main(argv: list[str]) -> int:
    if len(argv) < 5 or argv[4] != "--":
        posix.write(2, (USAGE + "\n").encode())
        return 2
    exit_file, wake_file, address, wrapper_args = argv[1], argv[2], argv[3], argv[5:]
    conn = _connect(address)
    status = _through_server(conn, wrapper_args) if conn is not None else None
    if status is None:
        status = _by_itself(wrapper_args)
    _record(exit_file, wake_file, status)
    return status


def _connect(address: str) -> "_socket.socket | None":
    """A connection to the fork server, if one of our own user answers at `address`; else None."""
    try:
        conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    except OSError:
        return None
    try:
        conn.connect(b"\0" + address.encode())
        creds = conn.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
        if int.from_bytes(creds[4:8], sys.byteorder) == posix.getuid():
            return conn
    except OSError:
        pass
    conn.close()
    return None


def _through_server(conn: "_socket.socket", wrapper_args: list[str]) -> int | None:
    """Hand the terminal to the server's worker and wait for its status; None when the server failed before
    the worker started (the caller then starts it itself)."""
    waiter = Waiter()
    for signum in FORWARDED:
        _signal.signal(signum, waiter.forward)
    gave_up_terminal = _give_up_terminal()
    cwd = posix.open(".", posix.O_RDONLY | posix.O_DIRECTORY)
    try:
        conn.sendmsg([_request(wrapper_args)], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, _fds(0, 1, 2, cwd))])
        status = _replies(conn, waiter)
    except OSError:
        status = None
    finally:
        posix.close(cwd)
        conn.close()
    if status is None and not waiter.group:
        if gave_up_terminal and not _take_terminal():
            posix.write(2, b"swarm: the fork server ended before starting the worker, and the terminal is gone\n")
            return 1
        for signum in FORWARDED:
            _signal.signal(signum, _signal.SIG_DFL)
        return None
    if status is None:  # the worker's keeper died without saying how the worker ended
        posix.write(2, b"swarm: the worker's keeper process ended without its exit status\n")
        return 1
    return status


def _replies(conn: "_socket.socket", waiter: Waiter) -> int | None:
    """Read the server's lines until `exit N`/`signal N` (the status, as a shell gives it) or the end."""
    buffered = b""
    while True:
        chunk = conn.recv(4096)
        if not chunk:
            return None
        buffered += chunk
        while b"\n" in buffered:
            line, buffered = buffered.split(b"\n", 1)
            word, _, number = line.partition(b" ")
            if word == b"pid":
                waiter.known(int(number))
            elif word == b"exit":
                return int(number)
            elif word == b"signal":
                return 128 + int(number)


def _request(wrapper_args: list[str]) -> bytes:
    umask = posix.umask(0o077)
    posix.umask(umask)
    env = [key + b"=" + value for key, value in posix.environ.items() if key != b"SWARM_PANE_STARTED"]
    env.append(b"SWARM_PANE_STARTED=%d" % STARTED)
    args = [arg.encode("utf-8", "surrogateescape") for arg in wrapper_args]
    fields = [PROTOCOL, b"%o" % umask, b"%d" % len(args), *args, *env]
    payload = b"\0".join(fields)
    return len(payload).to_bytes(4, "big") + payload


def _fds(*fds: int) -> bytes:
    return b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)


def _give_up_terminal() -> bool:
    """Release the pane's terminal so the worker can make it its own (only a session leader can); whether it
    did. Releasing sends SIGHUP to this process's group: this process alone, which ignores it meanwhile."""
    if not posix.isatty(0) or posix.getsid(0) != posix.getpid():
        return False
    forward = _signal.getsignal(_signal.SIGHUP)
    _signal.signal(_signal.SIGHUP, _signal.SIG_IGN)
    try:
        fcntl.ioctl(0, termios.TIOCNOTTY)
        return True
    except OSError:
        return False
    finally:
        _signal.signal(_signal.SIGHUP, forward)


def _take_terminal() -> bool:
    """Make the pane's terminal ours again (after the server failed to take it); whether it could be."""
    try:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        return True
    except OSError:
        return False


def _by_itself(wrapper_args: list[str]) -> int:
    """Run the wrapper as our child in this terminal, as the pane's shell did before there was a server."""
    python = sys.executable
    pid = posix.fork()
    if pid == 0:
        try:
            posix.execv(python, [python, "-m", "swarmd.worker", *wrapper_args])
        finally:
            posix._exit(127)
    for signum in (_signal.SIGINT, _signal.SIGQUIT):
        _signal.signal(signum, _signal.SIG_IGN)  # they reach the wrapper from the terminal; it answers them
    # A hang-up signals the session's leader alone: this process. A shell here would die of it and the kernel
    # would then hang up the foreground group; this one waits for the wrapper, so it hangs the group up itself.
    _signal.signal(_signal.SIGHUP, _HangUpOnce().handle)
    _signal.signal(_signal.SIGTERM, lambda signum, _frame: _kill_group(pid, signum))
    _, wait_status = posix.waitpid(pid, 0)
    code = posix.waitstatus_to_exitcode(wait_status)
    return code if code >= 0 else 128 - code


def _record(exit_file: str, wake_file: str, status: int) -> None:
    """What the pane's shell did as its last act: the status into EXIT_FILE (0600), then WAKE_FILE written."""
    try:
        fd = posix.open(exit_file, posix.O_WRONLY | posix.O_CREAT | posix.O_TRUNC | posix.O_CLOEXEC, 0o600)
        try:
            posix.write(fd, b"%d\n" % status)
        finally:
            posix.close(fd)
        posix.close(posix.open(wake_file, posix.O_WRONLY | posix.O_CREAT | posix.O_TRUNC | posix.O_CLOEXEC, 0o600))
    except OSError:
        pass


def _kill_group(group: int, signum: int) -> None:
    """Signal process group `group` (0: our own), if it is still there."""
    try:
        posix.killpg(group, signum)
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""A warm process that starts workers by forking: the supervisor's fork server.

Every worker pane used to start a Python interpreter that imported the wrapper before it could say ACCEPTED:
110-150 ms of CPU each, so fifty panes at once on two cores waited seconds. The fork server imports the
wrapper once; a pane's first process (`swarmd.workers.paneclient`, about 20 ms) connects to it and hands
over its terminal, and the server forks a child that becomes the worker. The idea is Android's zygote and
the `forkserver` start method of Python's `multiprocessing`.

For each connection the server forks a *keeper* at once (a client that says nothing never holds up the
server). The keeper reads the request, makes itself a session leader with the pane's terminal as its
controlling terminal, and forks the worker: the wrapper's `main` with the pane's arguments, environment,
working directory and umask. The keeper tells the client the worker's process group, then waits for the
worker (a pidfd, `os.pidfd_open`) and for the client's end of the connection: it sends the worker's exit
status when it ends, and hangs the worker up (SIGHUP to its group, as a closed terminal would) if the client
goes first. Keepers and workers are not the server's to wait for (SIGCHLD is ignored, so the kernel reaps
the keepers): a server that dies, or is killed, takes no worker with it.

The server lives as long as the pipe on its stdin: the supervisor holds the other end, so the server ends
with the supervisor, however that ends. Its address is an abstract Unix socket named for the home (no path
length limit, nothing left on disk); both ends check that the peer runs as the same user (SO_PEERCRED).
"""

import errno
import gc
import hashlib
import os
import select
import shlex
import signal
import socket
import subprocess
import sys
import termios
import time
import traceback
from contextlib import suppress
from fcntl import ioctl
from pathlib import Path
from typing import IO, NamedTuple

from swarmd.workers import wrapper

CLIENT = Path(__file__).with_name("paneclient.py")
MAX_REQUEST = 8 << 20  # bytes: arguments and environment of one worker
REQUEST_TIMEOUT = 30.0  # seconds a keeper waits for its client's request
BIND_WAIT = 5.0  # seconds a new server waits for the previous one to leave the address
BIND_RETRY = 0.05  # seconds between tries meanwhile
RESTART_INTERVAL = 5.0  # seconds: a server that keeps dying is started again at most this often
UNIX_CREDS = 12  # sizeof(struct ucred): pid, uid, gid


class Request(NamedTuple):
    """What a pane's client asks for: the wrapper's arguments, its environment, umask, and descriptors
    (stdin, stdout, stderr, working directory)."""

    args: list[str]
    env: dict[bytes, bytes]
    umask: int
    fds: list[int]


def address_for(home: Path, kind: str = "fork") -> str:
    """The abstract socket name of the home at `home` (its real path) for this user: its fork server's, or
    another of its sockets' (`kind`: "warm" for the pane pool, `swarmd.workers.warmpanes`)."""
    digest = hashlib.sha256(str(Path(home).resolve()).encode()).hexdigest()[:24]
    return f"swarmd-{kind}-{os.getuid()}-{digest}"


def peer(conn: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of the Unix socket `conn` (SO_PEERCRED); OSError if unknown."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, UNIX_CREDS)
    return int.from_bytes(creds[:4], sys.byteorder), int.from_bytes(creds[4:8], sys.byteorder)


class ForkServer:
    """The supervisor's handle on its fork server process (see the module's doc).

    `start` launches it; `ready()` says whether it answers (restarting it once it has died); `stop` ends it.
    Workers it started are not affected by either."""

    def __init__(self, home: Path) -> None:
        self.address = address_for(home)
        self.process: subprocess.Popen[bytes] | None = None
        self.listening = False
        self.started_at = float("-inf")  # monotonic seconds

    def start(self) -> "ForkServer":
        """Launch the server (it imports the wrapper, then listens); returns at once. OSError if it cannot."""
        self.started_at = time.monotonic()
        self.process = subprocess.Popen([sys.executable, "-m", "swarmd.workers.forkserver", self.address],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
        self.listening = False
        return self

    def ready(self, timeout: float = 0.0) -> bool:
        """Whether the server listens, waiting up to `timeout` seconds for it to say so; a server found dead
        is started again (and is not ready yet)."""
        process = self.process
        if process is None:
            return False
        if process.poll() is not None:
            if time.monotonic() - self.started_at >= RESTART_INTERVAL:
                with suppress(OSError):
                    self.start()
            return False
        if not self.listening:
            assert process.stdout is not None
            readable, _, _ = select.select([process.stdout], [], [], timeout)
            self.listening = bool(readable) and process.stdout.readline().strip() == b"listening"
        return self.listening

    def stop(self) -> None:
        """End the server (closing its stdin is its signal) and wait for it; its workers go on."""
        process, self.process = self.process, None
        if process is None:
            return
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def pane_command(self, exit_file: Path, wake_file: Path, wrapper_args: str,
                     pool: tuple[str, str, list[str]] | None = None) -> str:
        """The shell line that makes a pane's first process a client of this server: `wrapper_args` are shell
        words (already quoted), the arguments of `python -m swarmd.worker`. With `pool` (the pane pool's address,
        the session, and the names of the variables the session was given for its worker), a worker that exits
        0 leaves its pane to the pool (`swarmd.workers.warmpanes`)."""
        client = [sys.executable, "-I", "-S", str(CLIENT), str(exit_file), str(wake_file), self.address]
        if pool is not None:
            client += ["--pool", pool[0], pool[1], ",".join(pool[2])]
        return f"exec {shlex.join([*client, '--'])} {wrapper_args}"


# ----- the server process -----------------------------------------------------------------------------------
def serve(address: str, lifeline: IO[bytes], announce: IO[bytes]) -> None:
    """Accept clients at `address` until `lifeline` reaches its end, forking a keeper for each."""
    listener = _bind(address)
    listener.listen(128)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # keepers are reaped by the kernel
    wrapper.parse_args(["--script"])  # its first call costs ~8 ms (argparse, gettext): paid here, once for all
    # Everything imported so far goes to the collector's permanent generation: a child's collections then never
    # walk (and so never copy, page by page) what it shares with the server (the use gc.freeze documents).
    gc.freeze()
    announce.write(b"listening\n")
    announce.flush()
    while True:
        readable, _, _ = select.select([listener, lifeline], [], [])
        if lifeline in readable and not os.read(lifeline.fileno(), 4096):
            return
        if listener in readable:
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            if os.fork() == 0:
                listener.close()
                lifeline.close()
                os._exit(_keep(conn))
            conn.close()


def _bind(address: str) -> socket.socket:
    """A socket bound to `address`. The server of a supervisor that just died may hold it a moment longer
    (it leaves when it sees its stdin end): wait up to BIND_WAIT seconds for it. OSError after that."""
    deadline = time.monotonic() + BIND_WAIT
    while True:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(b"\0" + address.encode())
            return listener
        except OSError as exc:
            listener.close()
            if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
        time.sleep(BIND_RETRY)  # polled, with a deadline: nothing signals the old server's exit to us


def _keep(conn: socket.socket) -> int:
    """The keeper: take the request, start the worker, report its pid and then its status. Exit code for the
    keeper itself (2: a request it refused)."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        if peer(conn)[1] != os.getuid():
            return 2
        conn.settimeout(REQUEST_TIMEOUT)
        request = _receive(conn)
    except (OSError, ValueError):
        return 2
    os.setsid()
    if not _adopt(request):
        _say(conn, b"signal %d\n" % signal.SIGHUP)  # the pane ended while its client asked: nothing to run
        return 0
    for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGTSTP):
        signal.signal(signum, signal.SIG_IGN)  # the worker answers them; the keeper waits for it
    hang_up = _HangUp()
    signal.signal(signal.SIGHUP, hang_up)
    worker = os.fork()
    if worker == 0:
        conn.close()
        os._exit(_work(request))
    conn.settimeout(None)
    _say(conn, b"pid %d\n" % os.getpgrp())
    return _wait(conn, worker, hang_up)


def _receive(conn: socket.socket) -> Request:
    """The client's request and its descriptors; ValueError for one that does not parse, OSError when the
    connection fails or times out."""
    first, fds, _, _ = socket.recv_fds(conn, 65536, 8)
    try:
        if len(first) < 4 or len(fds) != 4:
            raise ValueError("a request needs its length and four descriptors")
        size = int.from_bytes(first[:4], "big")
        if size > MAX_REQUEST:
            raise ValueError("request too large")
        payload = bytearray(first[4:])
        while len(payload) < size:
            chunk = conn.recv(min(1 << 20, size - len(payload)))
            if not chunk:
                raise ValueError("request cut short")
            payload += chunk
        return _parse(bytes(payload[:size]), fds)
    except ValueError:
        for fd in fds:
            os.close(fd)
        raise


def _parse(payload: bytes, fds: list[int]) -> Request:
    fields = payload.split(b"\0")
    if len(fields) < 3 or fields[0] != b"1":
        raise ValueError("unknown request version")
    umask, count = int(fields[1], 8), int(fields[2])
    args = fields[3:3 + count]
    if len(args) != count:
        raise ValueError("request cut short")
    env = dict(entry.split(b"=", 1) for entry in fields[3 + count:] if b"=" in entry)
    return Request([os.fsdecode(arg) for arg in args], env, umask, fds)


def _adopt(request: Request) -> bool:
    """Make the client's terminal, directory and umask this process's: stdin, stdout and stderr become the
    pane's, and the pane's terminal our controlling one when the client has given it up. False when that
    terminal has hung up already (its pane ended)."""
    stdin, stdout, stderr, cwd = request.fds
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
    os.fchdir(cwd)
    for fd in request.fds:
        if fd > 2:
            os.close(fd)
    os.umask(request.umask)
    if os.isatty(0):
        try:
            ioctl(0, termios.TIOCSCTTY, 0)
        except OSError as exc:
            if exc.errno == errno.EIO:
                return False
            # still the client's (it is no session leader): signals then come through the client
    return True


def _work(request: Request) -> int:
    """The worker: the wrapper's main, as `python -m swarmd.worker ARGS` would run it in the pane."""
    for signum in (signal.SIGQUIT, signal.SIGHUP, signal.SIGTERM, signal.SIGTSTP):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ.clear()
    os.environb.update(request.env)
    _reopen_stdio()
    sys.argv = ["-m", *request.args]
    try:
        code = wrapper.main(request.args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    except BaseException:  # noqa: BLE001 - as the interpreter would: the traceback to the pane, status 1
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            pass
    return code


def _reopen_stdio() -> None:
    """New sys.stdin/stdout/stderr over descriptors 0-2, buffered as a new interpreter's would be there."""
    sys.stdin = open(0, "r", closefd=False, encoding="utf-8", errors="surrogateescape")
    sys.stdout = open(1, "w", buffering=1 if os.isatty(1) else -1, closefd=False, encoding="utf-8",
                      errors="surrogateescape")
    sys.stderr = open(2, "w", buffering=1, closefd=False, encoding="utf-8", errors="backslashreplace")


def _wait(conn: socket.socket, worker: int, hang_up: "_HangUp") -> int:
    """Wait for the worker; tell the client how it ended. A client gone first hangs the worker up."""
    pidfd = os.pidfd_open(worker)
    watching = [pidfd, conn]
    while True:
        readable, _, _ = select.select(watching, [], [])
        if pidfd in readable:
            break
        try:
            gone = not conn.recv(4096)
        except OSError:
            gone = True
        if gone:
            watching = [pidfd]
            hang_up.now()
    _, status = os.waitpid(worker, 0)
    code = os.waitstatus_to_exitcode(status)
    hang_up.now()  # what the worker left behind in its group goes, as it would when its terminal closed
    _release_terminal()
    _say(conn, b"exit %d\n" % code if code >= 0 else b"signal %d\n" % -code)
    return 0


def _release_terminal() -> None:
    """Give up the pane's terminal before reporting the worker's end, and close it, so that the pane's next
    worker (`swarmd.workers.warmpanes`) can make it its own at once and finds no one else holding it."""
    if os.isatty(0) and os.getsid(0) == os.getpid():
        with suppress(OSError):
            ioctl(0, termios.TIOCNOTTY)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


class _HangUp:
    """The keeper's SIGHUP handler. A terminal that hangs up signals only its session's leader, the keeper;
    a shell there would die of it and the kernel would then hang up its foreground group. The keeper lives on
    to report the worker's status, so it passes the hang-up on to its group itself, once."""

    def __init__(self) -> None:
        self.done = False

    def __call__(self, _signum: int, _frame: object) -> None:
        self.now()

    def now(self) -> None:
        """Hang up the keeper's group (the worker and its agent), unless that was done already."""
        if self.done:
            return
        self.done = True
        try:
            os.killpg(os.getpgrp(), signal.SIGHUP)
        except OSError:
            pass


def _say(conn: socket.socket, line: bytes) -> None:
    try:
        conn.sendall(line)
    except OSError:
        pass  # the client is gone: nobody to tell


def main(argv: list[str] | None = None) -> int:
    """`python -m swarmd.workers.forkserver ADDRESS`: serve until stdin ends."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m swarmd.workers.forkserver ADDRESS", file=sys.stderr)
        return 2
    serve(args[0], sys.stdin.buffer, sys.stdout.buffer)
    return 0


if __name__ == "__main__":
    sys.exit(main())

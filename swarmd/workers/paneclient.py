"""A worker pane's first process when the supervisor runs a fork server (`swarmd.workers.forkserver`).

    python -I -S paneclient.py EXIT_FILE WAKE_FILE ADDRESS [--pool POOL SESSION KEYS] -- WRAPPER_ARGS...
    python -I -S paneclient.py --warm WAKE_FILE ADDRESS POOL SESSION

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

With the supervisor's pane pool (`swarmd.workers.warmpanes`, at the abstract socket POOL) a pane serves more
than one worker. `--pool`: after its worker exits 0, the client drops the session's own variables (KEYS, a
comma-separated list), puts the terminal's modes back and, unless another process still holds the terminal,
offers the pane (`free SESSION`). `--warm`: a pane the pool started, with no worker yet (`warm SESSION`). Either
way it then runs each order the pool sends as the first worker was run, and offers the pane again after each
that exits 0 (`serve_pool`).

It imports nothing but interpreter built-ins and two small C modules, and runs under `-I -S` (no site, no
user paths): a pane starts in about 20 ms of CPU instead of the wrapper's 110-150 ms. The idea is that of
Android's zygote and of `multiprocessing`'s forkserver: fork a process that has already imported, instead of
starting a new one.

Wire format (client to server, one message): a 4-byte big-endian length, then NUL-separated fields: the
protocol version `1`, the umask in octal, the number of wrapper arguments, the arguments, then the
environment as `KEY=VALUE` entries; four descriptors ride on it: stdin, stdout, stderr and the working
directory. Server to client: the line `pid N` (the worker's process group), then `exit N` or `signal N`. With
the pool: lines `warm SESSION`, `free SESSION`, `free` to it; orders from it, each a 4-byte length and its
payload (see `swarmd.workers.warmpanes`), an empty one meaning "the pane is the pool's again".
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
USAGE = ("usage: python -I -S paneclient.py EXIT_FILE WAKE_FILE ADDRESS [--pool POOL_ADDRESS SESSION KEYS] -- ARGS...\n"
         "       python -I -S paneclient.py --warm WAKE_FILE ADDRESS POOL_ADDRESS SESSION")
ORDER_VERSION = b"w1"  # a warm pane's order (swarmd.workers.warmpanes)
MAX_ORDER = 8 << 20  # bytes
SHARED_WAIT = 0.5  # seconds a worker's hung-up leftovers get to let go of the terminal before its pane is reused
SHARED_POLL = 0.01  # seconds between looks meanwhile
ENV = dict(posix.environ)  # the worker's environment: this process's, changed by a warm pane's order


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
    modes = _terminal_modes()
    if len(argv) == 6 and argv[1] == "--warm":
        wake_file, address, pool, session = argv[2:]
        return serve_pool(wake_file, address, pool, b"warm " + session.encode(), modes)
    pool = argv[5:8] if argv[4:5] == ["--pool"] else None
    rest = argv[8:] if pool else argv[4:]
    if len(argv) < 5 or not rest or rest[0] != "--" or (pool is not None and len(pool) != 3):
        posix.write(2, (USAGE + "\n").encode())
        return 2
    status = run(argv[1], argv[2], argv[3], rest[1:])
    if status != 0 or pool is None:
        return status
    for key in pool[2].split(","):  # the session's own variables (its worker's): not for the pane's next
        ENV.pop(key.encode(), None)
    if not _reusable(modes):
        return status
    return serve_pool(argv[2], argv[3], pool[0], b"free " + pool[1].encode(), modes)


def run(exit_file: str, wake_file: str, address: str, wrapper_args: list[str]) -> int:
    """Start the worker through the fork server at `address` (else by ourselves), wait, record its status."""
    conn = _connect(address)
    status = _through_server(conn, wrapper_args) if conn is not None else None
    if status is None:
        status = _by_itself(wrapper_args)
    _record(exit_file, wake_file, status)
    for signum in FORWARDED:
        _signal.signal(signum, _signal.SIG_DFL)
    return status


def serve_pool(wake_file: str, address: str, pool: str, hello: bytes, modes: "list | None") -> int:
    """Serve the pane pool at `pool` (swarmd.workers.warmpanes): say `hello` (`warm SESSION`: a pane the pool
    started; `free SESSION`: a worker's own pane, its worker done with 0), then run each order the pool sends as
    `run` does; after each worker that exits 0, put the terminal's modes back and say `free` if no other
    process holds the terminal. Returns the status the pane ends with: a failed worker's (its dead pane stays
    for a post-mortem), or 0 when the pool does not take the pane back (it then ends as its worker's, to be
    read as ever). A pane the pool has taken back (it acknowledged with an empty order) waits under a pool
    name: when the pool goes, it removes itself, so that one renamed for a worker whose order never came is
    not taken for that worker's end."""
    global STARTED
    warm = hello.startswith(b"warm ")
    conn = _connect(pool)
    if conn is None:
        return _vanish() if warm else 0
    base, said, status = dict(ENV), hello + b"\n", 0
    while status == 0:
        try:
            if said:
                conn.sendall(said)
            message = _read_order(conn)
        except OSError:
            message = None
        said = b""
        if message is None:  # the pool has gone (stopped, or its supervisor died) or sent the pane away
            break
        if not message:  # taken back: the pane is the pool's again, under a pool name
            warm = True
            continue
        STARTED = time.time_ns()  # the worker's start is now: the pane's own began before it was needed
        ENV.clear()
        ENV.update(base)
        status = _take_order(message, wake_file, address)
        warm = False
        if status != 0 or not _reusable(modes):
            break
        said = b"free\n"
    conn.close()
    return _vanish() if warm else status


def _reusable(modes: "list | None") -> bool:
    """Make the terminal ready for another worker (its modes back: one may have left it raw; the pool resets
    the screen and clears the history when it takes the pane back); False if something the last worker left
    still holds the terminal, when this pane must not serve another."""
    _reset_terminal(modes)
    return not _terminal_shared(time.monotonic() + SHARED_WAIT)


def _terminal_shared(deadline: float) -> bool:
    """Whether a process other than this one still has the pane's terminal open at `deadline` (monotonic s):
    one the last worker left in a session of its own, say (those in its group were hung up: they get until
    then to go)."""
    while _holders():
        if time.monotonic() >= deadline:
            return True
        time.sleep(SHARED_POLL)
    return False


def _holders() -> bool:
    """Whether another process has the pane's terminal open, as /proc shows it (this user's processes: another
    user's cannot be read, and cannot have opened this terminal either)."""
    try:
        if not posix.isatty(0):
            return False
        tty = posix.fstat(0)
        me = posix.getpid()
        for entry in posix.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            fd_dir = "/proc/" + entry + "/fd"
            try:
                fds = posix.listdir(fd_dir)
            except OSError:
                continue
            for fd in fds:
                try:
                    found = posix.stat(fd_dir + "/" + fd)
                except OSError:
                    continue
                if found.st_rdev == tty.st_rdev and found.st_ino == tty.st_ino:
                    return True
    except OSError:
        return True  # cannot tell: do not hand this terminal to another worker
    return False


def _vanish() -> int:
    """Kill this pane (tmux names it in $TMUX and $TMUX_PANE); 0 if that cannot be done (it then just ends)."""
    socket_path, pane = ENV.get(b"TMUX", b"").split(b",")[0], ENV.get(b"TMUX_PANE", b"")
    if socket_path and pane:
        try:
            posix.execv("/bin/sh", ["sh", "-c", 'exec tmux -S "$1" kill-pane -t "$2"', "sh",
                                    socket_path.decode("utf-8", "surrogateescape"),
                                    pane.decode("utf-8", "surrogateescape")])
        except OSError:
            pass
    return 0


def _take_order(payload: bytes, wake_file: str, address: str) -> int:
    """Run one order: its worker's status, or 1 for one that does not parse or whose directory is gone."""
    try:
        exit_file, cwd, wrapper_args = _apply_order(payload)
    except ValueError as exc:
        posix.write(2, ("swarm: a warm pane could not take its order: %s\n" % exc).encode())
        return 1
    try:
        posix.chdir(cwd)
        ENV[b"PWD"] = cwd.encode("utf-8", "surrogateescape")
    except OSError as exc:
        posix.write(2, ("swarm: cannot enter %s: %s\n" % (cwd, exc.strerror)).encode())
        _record(exit_file, wake_file, 1)
        return 1
    return run(exit_file, wake_file, address, wrapper_args)


def _terminal_modes() -> "list | None":
    """The pane's terminal modes as they were before any worker, to give each next worker the same."""
    try:
        return termios.tcgetattr(0)
    except termios.error:
        return None


def _reset_terminal(modes: "list | None") -> None:
    """Put the terminal's modes back as they were before any worker."""
    try:
        if modes is not None:
            termios.tcsetattr(0, termios.TCSANOW, modes)
    except termios.error:
        pass


def _read_order(conn: "_socket.socket") -> "bytes | None":
    """The next message's payload (its 4-byte length read first: b"" for the pool's acknowledgment); None when
    the pool closed the connection first. Reads no further than the message."""
    data = b""
    while len(data) < 4:
        chunk = conn.recv(4 - len(data))
        if not chunk:
            return None
        data += chunk
    size = int.from_bytes(data, "big")
    if size > MAX_ORDER:
        raise OSError("order too large")
    payload = b""
    while len(payload) < size:
        chunk = conn.recv(min(1 << 16, size - len(payload)))
        if not chunk:
            return None
        payload += chunk
    return payload


def _apply_order(payload: bytes) -> tuple[str, str, list[str]]:
    """(exit file, working directory, wrapper arguments) of an order; its environment entries are applied to
    ENV. ValueError for one that does not parse."""
    fields = payload.split(b"\0")
    if len(fields) < 4 or fields[0] != ORDER_VERSION or not fields[3].isdigit():
        raise ValueError("unknown order")
    count = int(fields[3])
    args = fields[4:4 + count]
    if len(args) != count:
        raise ValueError("order cut short")
    for entry in fields[4 + count:]:
        key, eq, value = entry.partition(b"=")
        if eq:
            ENV[key] = value
        else:
            ENV.pop(key, None)
    decode = lambda raw: raw.decode("utf-8", "surrogateescape")  # noqa: E731
    return decode(fields[1]), decode(fields[2]), [decode(a) for a in args]


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
    env = [key + b"=" + value for key, value in ENV.items() if key != b"SWARM_PANE_STARTED"]
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
    if posix.isatty(0) and posix.getsid(0) == posix.getpid():
        _take_terminal()  # a reused pane's client gave its terminal up for the first worker: take it again
    python = sys.executable
    pid = posix.fork()
    if pid == 0:
        try:
            posix.execve(python, [python, "-m", "swarmd.worker", *wrapper_args], ENV)
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
    posix._exit(main(sys.argv))  # nothing buffered to flush (posix.write only): skip the interpreter's teardown

"""Warm panes: worker panes whose first process is started before it is needed, and used again.

Starting a worker's session costs a tmux invocation, a pane, a shell and the fork server's client (an
interpreter's start, 20-30 ms of CPU) before the worker can say ACCEPTED. A pool thread keeps `size` panes
*warm*: started, their client (`swarmd.workers.paneclient --warm`) connected to the pool and waiting. A
dispatch renames one for its worker, points its log at the worker's (`rename-session` and `pipe-pane`, one
tmux invocation for a whole wave) and sends the client its *order*: the wrapper's arguments, the worker's
environment and working directory, where to record the exit status. The client goes on as a fresh pane's
would: through the fork server, the worker owning the terminal. A worker for which no pane is ready gets a
session of its own, whose client runs it from its arguments (it needs no supervisor to start: one that dies
meanwhile loses nothing) and offers its pane to the pool when it exits 0 (`expect`).

A worker that exits 0 leaves its pane to the pool: its keeper hangs up what it left in its group and releases
the terminal, and the client puts the terminal's modes back, drops the worker's environment and, unless another
process still holds the terminal, says `free`; the pool renames the session to a pool name, closes its log,
resets the terminal (`send-keys -R`) and clears its history, acknowledges, and keeps it for the next worker (up
to `keep()` idle panes; those above `size` end once no pane has been taken or given back for IDLE_TRIM
seconds: a pane just given back has that long to serve). A worker that exits non-zero, or is killed, leaves
its dead pane for a post-mortem, as ever. The idea is a warm pool
(EC2 Auto Scaling's warm pools, Apache's prefork): pay the start-up before the request, and once for many.

The pool listens on an abstract Unix socket named for the home; each side checks the peer runs as the same
user (SO_PEERCRED). A client keeps its connection for the pane's life. When the pool closes it while the
pane is the pool's (started warm, or acknowledged), the pane kills itself: one renamed for a worker whose
order never came must not look like that worker's end. A pane still under its last worker's name when the
pool goes (its `free` not acknowledged) ends as that worker's, dead with its status, to be read by the next
supervisor as ever; a running worker is left alone (a pane the pool took but never ordered ends before its
worker said ACCEPTED: the supervisor abandons such an attempt, it does not fail it).

Wire: the client says `warm SESSION` (a pane the pool started) or `free SESSION` (a worker's own session, its
worker done), then `free` after each worker that exited 0. The pool sends messages of a 4-byte big-endian
length and a payload: empty, the acknowledgment; else an order: NUL-separated fields `w1`, the exit file, the
working directory, the number of arguments, the arguments, then environment entries (`KEY=VALUE` sets, a bare
`KEY` unsets). The task's text is never in it: it stays in the prompt file the arguments name.
"""

import logging
import os
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from swarmd.workers.forkserver import CLIENT, address_for, peer
from swarmd.workers.tmux import PaneInfo, SessionSpec, TmuxError, TmuxServer

log = logging.getLogger("swarmd.supervisor")

HELLO_TIMEOUT = 5.0  # seconds a new connection has to say which pane it is
START_TIMEOUT = 30.0  # seconds a started pane has to say hello before it is given up
SETTLE_WAIT = 2.0  # seconds a refill waits at most for the workers just given panes to say they are up
MAX_EXPECTED = 4096  # sessions remembered by `expect`
IDLE_TRIM = 30.0  # seconds the pool is unused (no pane taken or given back) before idle panes above `size` end
RETRY_AFTER = 5.0  # seconds before starting panes again after tmux refused
ORDER_VERSION = b"w1"
ACK = (0).to_bytes(4, "big")  # an empty order: "this pane is the pool's again"
WARM_MARK = "_warm"  # in a session name: no agent name starts with "_", so none is ever a worker's


@dataclass(frozen=True)
class Order:
    """What a warm pane is told to run: `python -m swarmd.worker ARGS` in `cwd`, with `env` set and `unset`
    taken out of the pane's environment, its exit status recorded in `exit_file`."""

    args: list[str]
    cwd: Path
    exit_file: Path
    env: dict[str, str] = field(default_factory=dict)
    unset: tuple[str, ...] = ()

    def encode(self) -> bytes:
        """The order on the wire (see the module's doc); ValueError for a NUL in a field or a bad name."""
        if any("=" in key or not key for key in [*self.env, *self.unset]):
            raise ValueError("an environment variable's name is empty or has '='")
        entries = [f"{key}={value}" for key, value in self.env.items()] + list(self.unset)
        fields = [ORDER_VERSION, os.fsencode(self.exit_file), os.fsencode(self.cwd), b"%d" % len(self.args),
                  *(text.encode("utf-8", "surrogateescape") for text in [*self.args, *entries])]
        if any(b"\0" in f for f in fields):
            raise ValueError("an order's field has a NUL byte")
        payload = b"\0".join(fields)
        return len(payload).to_bytes(4, "big") + payload


@dataclass
class WarmPane:
    """A pane of the pool: its session, its pane (the client's pid) and the client's connection."""

    session: str
    pane: PaneInfo
    conn: socket.socket


class WarmPanes:
    """The pool (see the module's doc) of panes on `tmux`, kept by a thread of its own.

    The step thread `take`s a ready pane and `start`s workers in taken panes, or `open`s new sessions for them;
    `settled` says a worker given a pane is up; `stop()` ends the thread and every pane not running a worker.
    `keep()` is how many idle panes to keep at most (read at each return of a pane)."""

    def __init__(self, home: Path, tmux: TmuxServer, fork_address: str, *, swarm: str, size: int,
                 keep: Callable[[], int], wake_file: Path, on_exit: list[str] | None = None) -> None:
        self.home, self.tmux, self.fork_address, self.size, self.keep = Path(home), tmux, fork_address, size, keep
        self.prefix, self.wake_file, self.on_exit = f"{swarm}-{WARM_MARK}", wake_file, on_exit
        self.address = address_for(self.home, "warm")
        self._lock = threading.Lock()
        self._ready: dict[str, WarmPane] = {}  # idle panes by session
        self._starting: dict[str, tuple[PaneInfo, float]] = {}  # started, no hello yet (monotonic s started)
        self._expected: dict[str, None] = {}  # sessions started for workers that may offer their pane (see expect)
        self._waiting: dict[socket.socket, float] = {}  # connections with no hello yet, since when
        self._running: dict[socket.socket, WarmPane] = {}  # panes given a worker, until they are free or gone
        # Sessions just given their worker, until it is up (`settled`): no pane is started meanwhile, so that a
        # new pane's start does not compete with that of a worker waited for (monotonic s given).
        self._unsettled: dict[str, float] = {}
        self._count = 0
        self._used_at = time.monotonic()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._wakeup_r, self._wakeup_w = os.pipe()
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        """Panes ready for a worker now."""
        return len(self._ready)

    # ----- the step thread's side ------------------------------------------------------------------------------
    def take(self) -> WarmPane | None:
        """A ready pane, now the caller's to `start`; None when none is ready."""
        with self._lock:
            if not self._ready:
                return None
            _, pane = self._ready.popitem()
            self._used_at = time.monotonic()
        return pane

    def start(self, taken: list[tuple[WarmPane, str, Path | None, Order]]) -> list[PaneInfo | TmuxError]:
        """Make each taken pane the session named (renamed, logging to the log given) and send it its order: one
        tmux invocation for all. The result for each, in order: the worker's pane, or the TmuxError that kept it
        from starting (the caller then starts it otherwise; that pane is gone)."""
        if not taken:
            return []
        try:
            renamed = self.tmux.rename_sessions([(warm.session, session, log) for warm, session, log, _ in taken])
        except TmuxError as exc:  # tmux did not answer: none is known to be renamed
            renamed = [exc] * len(taken)
        results: list[PaneInfo | TmuxError] = []
        for (warm, session, _, order), error in zip(taken, renamed):
            running = replace(warm, session=session, pane=replace(warm.pane, session=session))
            error = error or self._send(running, order)
            if error is not None:
                warm.conn.close()  # still the caller's (never handed back to the pool's thread)
                self._kill([warm.session, session])
            results.append(error or running.pane)
        self._poke()
        return results

    def expect(self, sessions: list[str]) -> None:
        """Sessions started for workers the ordinary way (their client runs the worker from its own arguments,
        so that it needs no supervisor to start): each may offer its pane when its worker exits 0."""
        with self._lock:
            for session in sessions:
                self._expected[session] = None
            while len(self._expected) > MAX_EXPECTED:  # the oldest: long ended (a session name is never reused)
                del self._expected[next(iter(self._expected))]

    def holds(self, session: str) -> bool:
        """Whether the pool takes `session`'s pane back when its worker exits 0: a pane of the pool running a
        worker, or a worker's own session `expect`ed to offer it."""
        with self._lock:
            return session in self._expected or any(w.session == session for w in self._running.values())

    def settled(self, session: str) -> None:
        """The worker in `session` is up (or gone): the pool may start panes again (see `_unsettled`)."""
        with self._lock:
            waited = self._unsettled.pop(session, None) is not None
        if waited:
            self._poke()

    def _send(self, running: WarmPane, order: Order) -> TmuxError | None:
        """Send a taken pane its order; once sent, its connection is the pool's thread's again (that thread then
        watches it and is the one to close it). On failure it stays the caller's."""
        try:
            running.conn.sendall(order.encode())
        except (OSError, ValueError) as exc:
            return TmuxError(f"the warm pane {running.session} did not take its order: {exc}")
        with self._lock:
            self._unsettled[running.session] = time.monotonic()
            self._running[running.conn] = running
        return None

    # ----- the pool's thread -----------------------------------------------------------------------------------
    def run(self) -> "WarmPanes":
        """Listen and start the pool's thread; returns at once. OSError when the address cannot be bound."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(b"\0" + self.address.encode())
        except OSError:
            listener.close()
            raise
        listener.listen(64)
        self._listener = listener
        self._thread = threading.Thread(target=self._serve, name="warm-panes", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the pool's thread and every pane not running a worker (their clients exit, their sessions are
        killed); workers running go on, their panes ending with them. Again: nothing more."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._poke()
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive():  # stuck in a tmux call: it is a daemon thread; leave its state to it
                log.warning("the pane pool's thread did not stop within 10 s")
                return
        with self._lock:
            idle = [*self._ready, *self._starting]
            conns = [*(w.conn for w in self._ready.values()), *self._running, *self._waiting]
            self._ready, self._starting, self._running, self._waiting = {}, {}, {}, {}
        for conn in conns:
            conn.close()
        if self._listener is not None:
            self._listener.close()
        if idle:
            self._kill(idle)
        os.close(self._wakeup_r)
        os.close(self._wakeup_w)

    def _poke(self) -> None:
        try:
            os.write(self._wakeup_w, b"x")
        except OSError:
            pass  # stopped already, or the pipe is full: the thread is awake either way

    def _serve(self) -> None:
        """The pool's thread: each round fills the pool, then waits for connections and deadlines. A round that
        fails (tmux not answering) is logged and the next one starts after RETRY_AFTER seconds."""
        retry_at = 0.0  # monotonic seconds: when to try starting panes again after tmux refused
        while not self._stopping.is_set():
            try:
                retry_at = self._round(retry_at)
            except (OSError, TmuxError, ValueError) as exc:
                log.warning("the pane pool's thread: %s (going on)", exc)
                self._stopping.wait(RETRY_AFTER)

    def _round(self, retry_at: float) -> float:
        """One round of `_serve`; returns when to try starting panes again."""
        now = time.monotonic()
        self._expire(now)
        with self._lock:
            unsettled = min(self._unsettled.values(), default=None)
        if unsettled is None and now >= retry_at and not self._fill():
            retry_at = now + RETRY_AFTER
        readable = self._wait(now, unsettled, retry_at)
        if self._wakeup_r in readable:
            os.read(self._wakeup_r, 4096)
        if self._listener in readable:
            self._accept()
        for conn in readable:
            if conn in self._waiting:
                self._hello(conn)
            elif isinstance(conn, socket.socket) and conn is not self._listener:
                self._heard(conn)
        return retry_at

    def _wait(self, now: float, unsettled: float | None, retry_at: float) -> list:
        """The connections (and wake-up pipe) readable within the next deadline the thread has."""
        with self._lock:
            conns = [*self._waiting, *(w.conn for w in self._ready.values()), *self._running]
            deadlines = [since + HELLO_TIMEOUT for since in self._waiting.values()]
            deadlines += [since + START_TIMEOUT for _, since in self._starting.values()]
            if len(self._ready) > self.size:
                deadlines.append(self._used_at + IDLE_TRIM)
        if unsettled is not None:
            deadlines.append(unsettled + SETTLE_WAIT)
        if retry_at > now:
            deadlines.append(retry_at)
        timeout = max(0.0, min(deadlines) - now) if deadlines else None
        try:
            readable, _, _ = select.select([self._listener, self._wakeup_r, *conns], [], [], timeout)
        except (OSError, ValueError):  # a connection the step thread took was closed meanwhile: look again
            return []
        return readable

    def _expire(self, now: float) -> None:
        """Give up what did not happen in time: hellos, panes that never connected (killed), a slow worker's
        start (it no longer holds refills up), and idle panes above `size` once the pool has been unused for
        IDLE_TRIM seconds."""
        for conn, since in list(self._waiting.items()):
            if now - since > HELLO_TIMEOUT:
                del self._waiting[conn]
                conn.close()
        with self._lock:
            late = [s for s, (_, since) in self._starting.items() if now - since > START_TIMEOUT]
            for session in late:
                del self._starting[session]
            for session in [s for s, since in self._unsettled.items() if now - since >= SETTLE_WAIT]:
                del self._unsettled[session]
            idle = [self._ready.pop(s) for s in list(self._ready)[self.size:]] \
                if now - self._used_at >= IDLE_TRIM else []
        if late:
            log.warning("warm panes %s did not start within %.0f s: killed", ", ".join(late), START_TIMEOUT)
        for warm in idle:
            warm.conn.close()
        if late or idle:
            self._kill(late + [w.session for w in idle])

    def _fill(self) -> bool:
        """Start as many panes as the pool lacks, in one tmux invocation, on a running tmux server (the first
        fill may start it); False when tmux refused."""
        with self._lock:
            missing = self.size - len(self._ready) - len(self._starting)
        if missing <= 0 or (self._count and not self.tmux.is_running()):
            return True  # a server lost is the supervisor's to notice (its workers are abandoned): not restarted
        specs = []
        for _ in range(missing):
            self._count += 1
            specs.append(self._spec(f"{self.prefix}{self._count}", None))
        ok = True
        for spec, pane in zip(specs, self.tmux.spawn_many(specs)):
            if isinstance(pane, TmuxError):
                log.warning("could not start a warm pane: %s", pane)
                ok = False
            else:
                with self._lock:
                    self._starting[spec.session] = (pane, time.monotonic())
        return ok

    def _spec(self, session: str, log_path: Path | None) -> SessionSpec:
        client = [sys.executable, "-I", "-S", str(CLIENT), "--warm", str(self.wake_file), self.fork_address,
                  self.address, session]
        return SessionSpec(session, client, env={}, cwd=self.home, log_path=log_path, on_exit=self.on_exit)

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        try:
            same_user = peer(conn)[1] == os.getuid()
        except OSError:
            same_user = False
        if not same_user:
            conn.close()
            return
        conn.settimeout(HELLO_TIMEOUT)
        self._waiting[conn] = time.monotonic()

    def _hello(self, conn: socket.socket) -> None:
        """A client says which pane it is: `warm SESSION` (one the pool started: ready now) or `free SESSION`
        (one started for a worker, `expect`ed, whose worker exited 0: taken back); any other is sent away."""
        del self._waiting[conn]
        try:
            words = conn.recv(256).split()
            pid = peer(conn)[0]
        except OSError:
            words, pid = [], 0
        kind, session = (words[0], words[1].decode(errors="replace")) if len(words) == 2 else (b"", "")
        with self._lock:
            started = self._starting.pop(session, None) if kind == b"warm" else None
            freed = kind == b"free" and self._expected.pop(session, 0) is None
        if started is None and not freed:
            conn.close()
            return
        conn.settimeout(None)
        if started is not None:
            with self._lock:
                self._ready[session] = WarmPane(session, started[0], conn)
        else:
            pane = PaneInfo(session=session, pane_id="", pid=pid, dead=False, exit_status=None, started=None,
                            command="")
            self._recycle(WarmPane(session, pane, conn))

    def _heard(self, conn: socket.socket) -> None:
        """A pane's client spoke or went: `free` (its worker exited 0: the pane comes back), or its end. A
        connection taken meanwhile by the step thread is left to it."""
        with self._lock:
            running = self._running.pop(conn, None)
            idle = next((s for s, w in self._ready.items() if w.conn is conn), None)
            if idle is not None:
                del self._ready[idle]  # an idle pane's client has gone (its session was killed)
        if running is None and idle is None:
            return
        try:
            said = conn.recv(256)
        except OSError:
            said = b""
        if running is not None and said.strip() == b"free":
            self._recycle(running)
            return
        conn.close()
        if idle is not None:
            self._kill([idle])

    def _recycle(self, running: WarmPane) -> None:
        """A pane whose worker has exited 0: renamed back to a warm name, its log closed and its history
        cleared, it is ready again (or ends, when the pool keeps enough idle panes)."""
        with self._lock:
            full = len(self._ready) >= max(self.size, self.keep())
        if full:
            running.conn.close()  # the client exits, its pane with it
            self._kill([running.session])
            return
        self._count += 1
        session = f"{self.prefix}{self._count}"
        if self.tmux.recycle_session(running.session, session) is not None:
            running.conn.close()  # killed meanwhile (the supervisor ended it): the client goes with it
            return
        try:
            running.conn.sendall(ACK)  # the client now knows the pane is the pool's (see paneclient.serve_pool)
        except OSError:
            running.conn.close()
            self._kill([session])
            return
        with self._lock:
            self._ready[session] = WarmPane(session, replace(running.pane, session=session), running.conn)
            self._used_at = time.monotonic()

    def _kill(self, sessions: list[str]) -> None:
        try:
            self.tmux.kill_sessions(sessions)
        except TmuxError as exc:
            log.warning("could not end panes %s: %s", ", ".join(sessions), exc)

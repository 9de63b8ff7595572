"""`swarm attach` for a worker on a host: by ssh when the host said how to reach it (`swarm host join --ssh`),
else through the host agent's terminal relay (the protocol is in `swarmd.hosts.wire`).

The operator's side of the relay puts its terminal in raw mode (every key goes to the worker's pane, tmux's own
prefix included: `C-b d` detaches) and restores it on every way out: the relay's end, a lost link, a signal.
"""

import contextlib
import os
import re
import secrets
import select
import shlex
import signal
import termios
import threading
import time
import tty
from dataclasses import asdict, dataclass, field
from types import FrameType
from typing import Any, Literal

from swarmd.config import Config
from swarmd.home import SwarmHome
from swarmd.hosts.directory import read_beats
from swarmd.hosts.names import HostError
from swarmd.hosts.relay import REQUEST_TIMEOUT, connect
from swarmd.hosts.wire import TERM_CONTROL, TERM_KEEPALIVE, TERM_LOST, AttachRequest, Layout, RpcReply, TermEnd, TermSize

SOCKET_UNKNOWN = "<the host home's run/tmux.sock>"
TERM_TYPE = re.compile(r"[A-Za-z0-9._+-]{1,64}")  # a $TERM passed on to the host (else xterm-256color)


@dataclass
class AttachPlan:
    """How `swarm attach` reaches a worker: `via` `tmux` (this machine: run `argv`), `ssh` (run `argv`, an ssh
    that runs tmux on the host) or `relay` (the host agent runs `argv` on its machine and relays the terminal)."""

    worker: str
    via: Literal["tmux", "ssh", "relay"]
    argv: list[str]
    host: str = ""
    session: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "extra"}

    def describe(self) -> str:
        """What would run, as a shell would take it (`swarm attach --print`)."""
        line = shlex.join(self.argv)
        return f"{line}    # on host {self.host}, through its agent's terminal relay" if self.via == "relay" else line


def remote_plan(home: SwarmHome, config: Config, host: str, worker: str, session: str, socket: str | None,
                relay: bool = False) -> AttachPlan:
    """The way to `worker` (tmux `session` on the host's server at `socket`) on `host`: ssh when the host's beat
    names an ssh destination and `relay` is not asked for, else the relay. Raises HostError when the host is
    not up (its heartbeat key is gone) or the hosts' server cannot be reached."""
    beat = read_beats(config, home).get(host)
    if beat is None:
        raise HostError(f"host {host} is down (no heartbeat): {worker} cannot be reached; see `swarm hosts`")
    tmux = ["tmux", "-S", socket or SOCKET_UNKNOWN, "attach-session", "-t", f"={session}"]
    if beat.ssh and not relay:
        return AttachPlan(worker, "ssh", ["ssh", "-t", "--", beat.ssh, shlex.join(tmux)], host, session)
    return AttachPlan(worker, "relay", tmux, host, session)


def terminal_size(fd: int) -> tuple[int, int]:
    """(rows, cols) of the terminal `fd`, 24 x 80 when it has none."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return 24, 80
    return max(1, min(1000, size.lines)), max(1, min(1000, size.columns))


class TermClient:
    """The operator's side of one terminal relay to `worker` on `host` (`run()` once).

    Raises HostError when stdin is not a terminal, or the host refuses or does not answer."""

    def __init__(self, home: SwarmHome, config: Config, host: str, worker: str, *, stdin: int = 0,
                 stdout: int = 1) -> None:
        if not os.isatty(stdin):
            raise HostError("swarm attach needs a terminal: run it in one (stdin is not a tty)")
        self.home, self.config, self.host, self.worker = home, config, host, worker
        self.stdin, self.stdout = stdin, stdout
        self.layout = Layout(config.name)
        self.sid = secrets.token_hex(8)
        self.in_subject = self.layout.term(host, self.sid, "in")
        self.out_subject = self.layout.term(host, self.sid, "out")
        self.end: TermEnd | None = None
        self.heard = self.sent = time.monotonic()  # when the host was last heard from, and last sent to
        self.wake_r, self.wake_w = os.pipe()
        self.resized = threading.Event()

    def run(self) -> TermEnd:
        """Relay this terminal until the host ends it (detached, session ended) or the link is lost; how it ended.
        The terminal is in raw mode meanwhile, and restored before this returns or raises."""
        link = connect(self.home, self.config, "swarm-attach")
        try:
            self._open(link)
            try:
                with raw_mode(self.stdin), self._signals():
                    return self._relay(link)
            finally:
                if self.end is None:  # left (a signal, the terminal gone): the host ends its client now
                    self._send(link, TermEnd(reason="closed").model_dump_json().encode(), "end")
        finally:
            link.close()
            os.close(self.wake_r)
            os.close(self.wake_w)

    def _open(self, link: Any) -> None:
        rows, cols = terminal_size(self.stdin)
        term_type = os.environ.get("TERM", "")
        request = AttachRequest(worker=self.worker, term=self.sid, rows=rows, cols=cols,
                                term_type=term_type if TERM_TYPE.fullmatch(term_type) else "xterm-256color")

        async def open_() -> Any:
            await link.nc.subscribe(self.out_subject, cb=self._heard)
            return await link.nc.request(self.layout.term_open(self.host), request.model_dump_json().encode(),
                                         timeout=REQUEST_TIMEOUT)

        try:
            msg = link.run(open_())
        except Exception as exc:  # noqa: BLE001 - no responders, timeout, link down: one line for the user
            raise HostError(f"host {self.host} did not answer the attach to {self.worker}: "
                            f"{type(exc).__name__} {exc}".strip()) from None
        reply = RpcReply.model_validate_json(msg.data)
        if not reply.ok:
            raise HostError(f"host {self.host}: {reply.error}")

    async def _heard(self, msg: Any) -> None:
        """A message from the host (on the link's loop): bytes to draw, or the relay's end."""
        self.heard = time.monotonic()
        if (msg.headers or {}).get(TERM_CONTROL) == "end":
            self.end = TermEnd.model_validate_json(msg.data)
            os.write(self.wake_w, b"e")
        elif msg.data and self.end is None:
            write_all(self.stdout, msg.data)

    def _relay(self, link: Any) -> TermEnd:
        """Send what is typed and the window's changes, and keepalives, until the end (or silence)."""
        while self.end is None:
            now = time.monotonic()
            if now - self.heard > TERM_LOST:
                self.end = TermEnd(reason="lost")
                self._send(link, self.end.model_dump_json().encode(), "end")
                break
            if now - self.sent >= TERM_KEEPALIVE:
                self._send(link, b"")  # keepalive
            ready, _, _ = select.select([self.stdin, self.wake_r], [], [], max(0.0, self.sent + TERM_KEEPALIVE - now))
            if self.wake_r in ready:
                os.read(self.wake_r, 512)
            if self.resized.is_set():
                self.resized.clear()
                rows, cols = terminal_size(self.stdin)
                self._send(link, TermSize(rows=rows, cols=cols).model_dump_json().encode(), "size")
            if self.stdin in ready:
                try:
                    data = os.read(self.stdin, 4096)
                except OSError:  # EIO: the terminal is gone
                    data = b""
                if not data:  # the terminal closed: leave (the host ends its client)
                    break
                self._send(link, data)
        return self.end or TermEnd(reason="closed")

    def _send(self, link: Any, data: bytes, control: str | None = None) -> None:
        self.sent = time.monotonic()
        headers = {TERM_CONTROL: control} if control else None
        with contextlib.suppress(Exception):  # link down: the silence check ends the relay
            link.run(link.nc.publish(self.in_subject, data, headers=headers), timeout=TERM_KEEPALIVE)

    @contextlib.contextmanager
    def _signals(self) -> Any:
        """SIGWINCH: send the new size; SIGTERM, SIGHUP: leave (the terminal is restored on the way out)."""
        def resized(_sig: int, _frame: FrameType | None) -> None:
            self.resized.set()
            with contextlib.suppress(OSError):
                os.write(self.wake_w, b"w")

        def leave(sig: int, _frame: FrameType | None) -> None:
            raise SystemExit(128 + sig)

        previous = {sig: signal.signal(sig, handler) for sig, handler in
                    ((signal.SIGWINCH, resized), (signal.SIGTERM, leave), (signal.SIGHUP, leave))}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


@contextlib.contextmanager
def raw_mode(fd: int) -> Any:
    """The terminal `fd` in raw mode (tty.setraw) for the block; its settings as they were on any way out."""
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [])


def attach_remote(home: SwarmHome, config: Config, plan: AttachPlan) -> int:
    """Run `plan` (ssh: replace this process; relay: relay until the end). The exit status: 0 after a detach or
    the session's end; HostError when the host went silent."""
    if plan.via == "ssh":
        os.execvp(plan.argv[0], plan.argv)
    end = TermClient(home, config, plan.host, plan.worker).run()
    if end.reason == "lost":
        raise HostError(f"lost the terminal of {plan.worker} on host {plan.host}: nothing heard for "
                        f"{TERM_LOST:g} s (the worker is untouched)")
    return 0

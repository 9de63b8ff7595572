"""The host agent's side of `swarm attach` through its relay: a tmux client in a pty, relayed over core NATS.

For each `AttachRequest` the agent starts `tmux -S <its socket> attach-session -t =<session>` in a pty of its own
(`os.openpty`) and relays the bytes both ways, as the protocol in `swarmd.hosts.wire` says. Everything runs on
the agent's NATS loop: the pty's reads by the loop's reader, its writes by its writer when the pty is full. The
tmux client is only a client: ending the relay ends it, never the worker's pane or session. The tmux client
has no controlling terminal: a resize sets the pty's size and sends it SIGWINCH itself (what the kernel would
do for a foreground process of a controlling terminal; tmux asks the pty for its size on SIGWINCH).
"""

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable
from typing import Any

from swarmd.hosts.wire import (TERM_CONTROL, TERM_KEEPALIVE, TERM_LOST, AttachRequest, Layout, RpcReply, TermEnd,
                               TermSize)
from swarmd.workers.tmux import TmuxServer

log = logging.getLogger("swarmd.hosts")

READ_SIZE = 65536  # bytes read from the pty at once (one `out` message at most)


def set_size(fd: int, rows: int, cols: int) -> None:
    """Set the window size of the terminal `fd` (a pty's master or slave) in character cells."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Terminals:
    """The terminal relays of one host agent, on its link's loop.

    `session_of(worker)` is the tmux session of a worker this host runs (None: not one of its workers). `listen()`
    (a coroutine, on the loop) answers attach requests; `close()` (any thread) ends every relay's tmux client.
    """

    def __init__(self, link: Any, layout: Layout, host: str, tmux: TmuxServer,
                 session_of: Callable[[str], str | None]) -> None:
        self.link, self.layout, self.host, self.tmux, self.session_of = link, layout, host, tmux, session_of
        self.relays: dict[str, TermRelay] = {}

    async def listen(self) -> None:
        await self.link.nc.subscribe(self.layout.term_open(self.host), cb=self._open)

    async def _open(self, msg: Any) -> None:
        try:
            reply = await self.open(AttachRequest.model_validate_json(msg.data))
        except Exception as exc:  # noqa: BLE001 - a bad request gets its reason, never kills the handler
            reply = RpcReply(ok=False, error=f"{type(exc).__name__}: {exc}".splitlines()[0])
        await msg.respond(reply.model_dump_json().encode())

    async def open(self, request: AttachRequest) -> RpcReply:
        """Start relaying a tmux client attached to the worker's session; refused (ok False, why) for a worker
        this host does not run, one whose pane has ended, or a terminal id in use."""
        session = self.session_of(request.worker)
        if session is None:
            return RpcReply(ok=False, error=f"no worker {request.worker!r} on host {self.host}")
        pane = self.tmux.pane(session)
        if pane is None or pane.dead:
            return RpcReply(ok=False, error=f"{request.worker} has ended on host {self.host}: nothing to attach to")
        if request.term in self.relays:
            return RpcReply(ok=False, error=f"terminal {request.term} is in use")
        relay = TermRelay(self, request, self.tmux.attach_argv(session))
        self.relays[request.term] = relay
        try:
            await relay.start()
        except OSError as exc:
            self.relays.pop(request.term, None)
            return RpcReply(ok=False, error=f"cannot start a tmux client on host {self.host}: {exc}")
        log.info("terminal %s: attached to %s", request.term, request.worker)
        return RpcReply(ok=True, running=True)

    def close(self) -> None:
        """End the tmux clients of every relay (the agent is stopping; its workers go on)."""
        for relay in list(self.relays.values()):
            relay.stop_client()


class TermRelay:
    """One terminal: a tmux client in a pty, its bytes relayed on `term.<host>.<sid>.in` / `.out`."""

    def __init__(self, terminals: Terminals, request: AttachRequest, argv: list[str]) -> None:
        self.terminals, self.request, self.argv = terminals, request, argv
        layout, host, sid = terminals.layout, terminals.host, request.term
        self.nc = terminals.link.nc
        self.in_subject, self.out_subject = layout.term(host, sid, "in"), layout.term(host, sid, "out")
        self.master = -1
        self.proc: subprocess.Popen | None = None
        self.sub: Any = None
        self.outbox: asyncio.Queue[tuple[bytes, dict[str, str] | None]] = asyncio.Queue()
        self.unwritten = b""  # typed bytes the pty had no room for yet
        self.heard = time.monotonic()  # when the operator was last heard from
        self.ended = False

    async def start(self) -> None:
        """Open the pty, subscribe to the operator's side, then start the client (OSError if it cannot run)."""
        loop = asyncio.get_running_loop()
        self.sub = await self.nc.subscribe(self.in_subject, cb=self._heard)
        master, slave = os.openpty()
        self.master = master
        try:
            set_size(slave, self.request.rows, self.request.cols)
            env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
            env["TERM"] = self.request.term_type
            self.proc = subprocess.Popen(self.argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                         start_new_session=True, close_fds=True)
        except OSError:
            os.close(master)
            await self.sub.unsubscribe()
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        loop.add_reader(master, self._readable)
        for job in (self._pump(), self._watch(), self._keepalive()):
            self.terminals.link.spawn(job)  # the link's tasks: cancelled when it closes

    # ----- host -> operator ---------------------------------------------------------------------------------
    def _readable(self) -> None:
        self._read()

    def _read(self) -> bool:
        """Queue what the pty holds now; False once it is closed (the client and tmux have let it go)."""
        while True:
            try:
                data = os.read(self.master, READ_SIZE)
            except BlockingIOError:
                return True
            except OSError:  # EIO: no process holds the pty's other side any more
                data = b""
            if not data:
                asyncio.get_running_loop().remove_reader(self.master)
                return False
            self.outbox.put_nowait((data, None))

    async def _pump(self) -> None:
        """Publish the queued messages in order (a TermEnd last)."""
        while True:
            data, headers = await self.outbox.get()
            try:
                await self.nc.publish(self.out_subject, data, headers=headers)
            except Exception as exc:  # noqa: BLE001 - link down: the operator's side notices the silence
                log.debug("terminal %s: not sent: %s", self.request.term, exc)
            if headers is not None:
                return

    async def _watch(self) -> None:
        """Once the tmux client exits (detached, its session gone, or ended by `stop_client`), end the relay."""
        assert self.proc is not None
        status = await asyncio.to_thread(self.proc.wait)
        self.finish(TermEnd(reason="detached", status=status))

    async def _keepalive(self) -> None:
        """An empty `out` message every TERM_KEEPALIVE s; the relay ends once the operator is silent TERM_LOST s."""
        while not self.ended:
            await asyncio.sleep(TERM_KEEPALIVE)
            if time.monotonic() - self.heard > TERM_LOST:
                log.info("terminal %s: the operator's side went silent", self.request.term)
                self.stop_client()
                return
            self.outbox.put_nowait((b"", None))

    # ----- operator -> host ---------------------------------------------------------------------------------
    async def _heard(self, msg: Any) -> None:
        self.heard = time.monotonic()
        kind = (msg.headers or {}).get(TERM_CONTROL)
        if self.ended:
            return
        if kind is None:
            self._write(msg.data)
        elif kind == "size":
            size = TermSize.model_validate_json(msg.data)
            set_size(self.master, size.rows, size.cols)
            self._signal(signal.SIGWINCH)
        elif kind == "end":
            self.stop_client()

    def _write(self, data: bytes) -> None:
        """Type `data` into the pty; what it has no room for now is written when it has."""
        if not data and not self.unwritten:
            return
        self.unwritten += data
        try:
            written = os.write(self.master, self.unwritten)
        except BlockingIOError:
            written = 0
        except OSError:
            written, self.unwritten = 0, b""  # the client is gone: its end is on its way
        self.unwritten = self.unwritten[written:]
        loop = asyncio.get_running_loop()
        if self.unwritten:
            loop.add_writer(self.master, self._write, b"")
        else:
            loop.remove_writer(self.master)

    # ----- the end ------------------------------------------------------------------------------------------
    def _signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def stop_client(self) -> None:
        """End the tmux client (it detaches; the session stays): the relay then ends as after a detach."""
        self._signal(signal.SIGTERM)

    def finish(self, end: TermEnd) -> None:
        """The client has exited: send what it drew last, then `end`; let the pty and the subjects go."""
        if self.ended:
            return
        self.ended = True
        loop = asyncio.get_running_loop()
        self._read()
        loop.remove_reader(self.master)
        loop.remove_writer(self.master)
        os.close(self.master)
        self.outbox.put_nowait((end.model_dump_json().encode(), {TERM_CONTROL: "end"}))
        self.terminals.relays.pop(self.request.term, None)
        self.terminals.link.spawn(self.sub.unsubscribe())
        log.info("terminal %s: ended (%s)", self.request.term, end.reason)

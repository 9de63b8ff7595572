"""Serving the dashboard: the listening socket (loopback unless told otherwise), uvicorn, and
`run/web.json` that tells `swarm web --link` in another terminal where the running server is.

Imports starlette and uvicorn: import this module only when serving (the CLI does, inside `swarm web`)."""

import getpass
import ipaddress
import json
import os
import re
import socket
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
import uvicorn

from swarmd.errors import SwarmError
from swarmd.home import SwarmHome
from swarmd.web.app import create_app
from swarmd.web.auth import Auth

GRACEFUL_STOP = 2.0  # seconds open event streams get to end when the server stops


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def link(self, token: str) -> str:
        return f"{self.url}/login?t={token}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_actor() -> str:
    """Who a link signs in as unless told: `<login>.web` (the feed's agent on what the page does)."""
    with suppress(Exception):
        login = re.sub(r"[^a-z0-9._-]", "-", getpass.getuser().lower()).strip("-.")[:40]
        if login:
            return f"{login}.web"
    return "operator.web"


def bind(host: str, port: int, allow_remote: bool) -> socket.socket:
    """A listening socket on host:port (port 0: any free one). Raises SwarmError for a host beyond loopback
    without `allow_remote`, and for an address that cannot be bound."""
    if not is_loopback(host) and not allow_remote:
        raise SwarmError(f"{host} is not a loopback address: anyone who can reach it could try the dashboard; "
                         "pass --allow-remote to serve it there anyway")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(128)
    except OSError as exc:
        raise SwarmError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def running(home: SwarmHome) -> Address | None:
    """The address of the dashboard running for `home` (its process alive), or None."""
    try:
        data = json.loads((home.run_dir / "web.json").read_text())
        os.kill(int(data["pid"]), 0)
        return Address(str(data["host"]), int(data["port"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def serve(home: SwarmHome, sock: socket.socket, on_ready: Callable[[Address], None]) -> None:
    """Serve the dashboard of `home` on `sock` until SIGINT or SIGTERM; `on_ready(address)` once it listens."""
    host, port = sock.getsockname()[:2]
    address = Address(host, port)
    config = uvicorn.Config(create_app(home), log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=GRACEFUL_STOP, access_log=False)
    server = _Server(config, lambda: on_ready(address))
    _write_running(home, address)
    try:
        server.run(sockets=[sock])
    finally:
        with suppress(FileNotFoundError):
            os.unlink(home.run_dir / "web.json")


def new_link(home: SwarmHome, address: Address, actor: str) -> str:
    return address.link(Auth(home).mint_link(actor))


def _write_running(home: SwarmHome, address: Address) -> None:
    path, tmp = home.run_dir / "web.json", home.run_dir / f"web.json.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"pid": os.getpid(), "host": address.host, "port": address.port}, f)
    os.replace(tmp, path)


class _Server(uvicorn.Server):
    """uvicorn's server, calling back once it is listening (after the app's startup)."""

    def __init__(self, config: uvicorn.Config, ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._ready()

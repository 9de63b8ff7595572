"""A connection to a NATS server with JetStream that ordinary threads use: nats-py's asyncio client runs on an
event loop of its own thread, and each call waits for its result there.

The address, credentials and TLS are checked before anything connects, by Agent Mail's transport's rules: a login
comes from a file only the user can read (never a command line or a URL), and a server that is not on loopback is
reached over TLS.
"""

import asyncio
import logging
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from agentmail.errors import TransportConfigError
from agentmail.transportsettings import check_transport_url, is_loopback, load_credentials
from swarmd.hosts.names import HostError

log = logging.getLogger("swarmd.hosts")
T = TypeVar("T")

PING_INTERVAL = 1  # seconds between the client's pings: a dead link is noticed within ~3 s
MAX_OUTSTANDING_PINGS = 2
CONNECT_TIMEOUT = 2  # seconds for one connection attempt (an unreachable address never answers)
RETRY_WAIT = 0.25  # seconds between connection attempts
CALL_TIMEOUT = 10.0  # seconds one call may wait for the server


def check_url(url: str) -> str:
    """Return `url` if it is a NATS address this client may use (`nats://HOST:PORT` or `tls://HOST:PORT`, no
    login in it: that goes in a credentials file), else raise HostError. The rules are Agent Mail's transport's."""
    if "@" in str(url):
        raise HostError("a NATS address carries no login: put it in a file (mode 0600) and pass --credentials")
    try:
        if check_transport_url(url) == "files":
            raise TransportConfigError("a worker host needs a NATS server")
    except TransportConfigError as exc:
        raise HostError(f"bad NATS address {url!r}: give nats://HOST:PORT or tls://HOST:PORT ({exc})") from None
    return url


def read_credentials(path: Path) -> dict[str, Any]:
    """nats-py's connect options for the login in `path` (a NATS `.creds` file, an nkey seed, or one line
    `user:password`, as Agent Mail's transport reads them). Raises HostError when the file is missing, readable
    by others (it must be 0600 or stricter) or none of these."""
    try:
        login = load_credentials(Path(path))
    except TransportConfigError as exc:
        raise HostError(str(exc).replace("transport credentials", "credentials")) from None
    if login.creds_file:
        return {"user_credentials": str(login.path)}
    if login.nkey_seed:
        return {"nkeys_seed_str": login.nkey_seed}
    return {"user": login.user, "password": login.password}


def tls_context(url: str, ca: Path | None) -> ssl.SSLContext | None:
    """The TLS context for `url`, verified against `ca` (else the system's authorities): TLS whenever the host is
    not loopback, the scheme is `tls://` or a CA is given; None for plain nats:// to loopback."""
    parts = urlsplit(url)
    if parts.scheme == "nats" and ca is None and is_loopback(parts.hostname or ""):
        return None
    try:
        return ssl.create_default_context(cafile=str(ca) if ca else None)
    except (OSError, ssl.SSLError) as exc:
        raise HostError(f"cannot use the certificate authorities in {ca}: {exc}") from None


class NatsLink:
    """One NATS connection, kept up by nats-py (it reconnects by itself) and used from any thread.

    `start()` returns at once; the first connection is tried again and again until it succeeds or `close()`.
    `connected_since` is the monotonic time of the current connection (None while down). `on_connect` runs (on
    the loop) after each connection, first or again. `inbox` is the prefix of its reply subjects (the one its
    login may listen on: `swarmd.hosts.permissions`; NATS's `_INBOX` when None). Raises HostError from the
    constructor for a bad address, credentials or TLS file.
    """

    def __init__(self, url: str, *, name: str, credentials: Path | None = None, ca: Path | None = None,
                 inbox: str | None = None, on_connect: Callable[[], Awaitable[None]] | None = None) -> None:
        self.url = check_url(url)
        self.options: dict[str, Any] = {"name": name, **(read_credentials(credentials) if credentials else {})}
        if inbox is not None:
            self.options["inbox_prefix"] = inbox
        tls = tls_context(url, ca)
        if tls is not None:
            self.options.update(tls=tls, tls_hostname=urlsplit(url).hostname)
        self.on_connect = on_connect
        self.loop = asyncio.new_event_loop()
        self.nc: Any = None
        self.js: Any = None
        self.connected_since: float | None = None
        self.ever_connected = threading.Event()
        self.closing = False
        self._thread = threading.Thread(target=self.loop.run_forever, name=f"nats-{name}", daemon=True)
        self._tasks: set[asyncio.Task] = set()
        self._said: set[str] = set()  # refusals already logged

    def start(self) -> "NatsLink":
        self._thread.start()
        self.spawn(self._connect())
        return self

    @property
    def connected(self) -> bool:
        return self.connected_since is not None and self.nc is not None and self.nc.is_connected

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        """Run `coro` on the link's loop and return its result (its exception raised here; TimeoutError after
        `timeout` s, the coroutine then cancelled)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> Future:
        """Run `coro` on the link's loop in the background (a task the link keeps until it ends)."""
        def start() -> None:
            task = self.loop.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._finished)

        done: Future = Future()
        self.loop.call_soon_threadsafe(lambda: (start(), done.set_result(None)))
        return done

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("NATS task failed: %r", task.exception(), exc_info=task.exception())

    async def _connect(self) -> None:
        import nats

        while not self.closing:
            try:
                self.nc = await nats.connect(
                    self.url, allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=RETRY_WAIT,
                    connect_timeout=CONNECT_TIMEOUT, ping_interval=PING_INTERVAL,
                    max_outstanding_pings=MAX_OUTSTANDING_PINGS, disconnected_cb=self._down,
                    reconnected_cb=self._up, error_cb=self._error, **self.options)
            except Exception as exc:  # noqa: BLE001 - not there yet, refused, timed out: try again
                log.debug("cannot connect to %s yet: %s", self.url, exc)
                await asyncio.sleep(RETRY_WAIT)
                continue
            self.js = self.nc.jetstream()
            await self._up()
            return

    async def _up(self) -> None:
        self.connected_since = time.monotonic()
        if self.on_connect is not None:
            try:
                await self.on_connect()
            except Exception as exc:  # noqa: BLE001 - the next call that needs it fails and says why
                log.warning("setting up after connecting to %s failed: %s", self.url, exc)
        self.ever_connected.set()

    async def _down(self) -> None:
        self.connected_since = None

    async def _error(self, exc: Exception) -> None:
        """A login refused, or a subject this login may not use: said once each (a retry loop meets it again and
        again); anything else is the connection's ordinary weather."""
        said = str(exc)
        if ("permissions violation" in said.lower() or "authorization" in said.lower()) and said not in self._said:
            self._said.add(said)
            log.warning("NATS server at %s refused: %s", self.url, said)
        else:
            log.debug("NATS: %s", exc)

    def close(self, timeout: float = 5.0) -> None:
        """Close the connection (pending publishes flushed if the server is there) and stop the loop."""
        self.closing = True
        if self._thread.is_alive():
            try:
                self.run(self._close(), timeout)
            except Exception:  # noqa: BLE001 - closing anyway
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)

    async def _close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.close()


async def publish_until_acked(link: NatsLink, subject: str, data: bytes, msg_id: str,
                              closing: Callable[[], bool] | None = None) -> None:
    """Publish to JetStream and wait for the stream's acknowledgement, trying again (same message id: the stream
    stores it once) until one comes or `closing()` says to give up (then TimeoutError)."""
    import nats.errors
    from nats.js.errors import APIError

    while True:
        if link.js is not None and link.connected:
            try:
                await link.js.publish(subject, data, timeout=2, headers={"Nats-Msg-Id": msg_id})
                return
            except (nats.errors.Error, APIError, asyncio.TimeoutError, OSError) as exc:
                log.debug("publish to %s not acknowledged yet: %s", subject, exc)
        if closing is not None and closing():
            raise TimeoutError(f"not published to {subject}: the link is closing")
        await asyncio.sleep(RETRY_WAIT)


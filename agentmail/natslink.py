"""One process's connection to a NATS server for Agent Mail, and the retry of every call until it is answered.

A call (`NatsLink.call`) is retried while the server cannot answer (not connected, a request timed out, no
JetStream responder yet after a restart) until its deadline, then fails with `TransportUnavailable` naming the
server: so a publish is retried until the server acknowledges it (its `Nats-Msg-Id` makes a retry that lands
twice count once). The streams and the registry bucket are made on first connection (idempotent).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import RePublish, RetentionPolicy, StorageType, StreamConfig
from nats.js.kv import KeyValue

from agentmail import natsloop
from agentmail.errors import TransportConfigError, TransportUnavailable
from agentmail.transportsettings import TransportSettings

T = TypeVar("T")

DEADLINE = 30.0  # seconds a call is retried before TransportUnavailable
REQUEST_TIMEOUT = 2.0  # seconds one JetStream request waits for its answer
PING_INTERVAL = 2  # seconds between the client's pings
MAX_OUTSTANDING_PINGS = 2  # unanswered pings before the link counts as down
BACKOFF = (0.02, 0.5)  # first and longest pause between two tries, seconds (doubling)
DUPLICATE_WINDOW = 120.0  # seconds JetStream remembers a Nats-Msg-Id (far above DEADLINE)
KEEP_CLAIMS = 86400.0  # seconds a claim's commit record is kept (its message is removed right after it)
KEEP_READ = 7 * 86400.0  # seconds claimed and set-aside copies are kept (read_claimed, bad)
TLS_MISMATCH = (nats.errors.SecureConnRequiredError, nats.errors.SecureConnWantedError,
                nats.errors.SecureConnFailedError)
RETRYABLE = (nats.errors.TimeoutError, nats.errors.ConnectionClosedError, nats.errors.NoRespondersError,
             nats.errors.ConnectionReconnectingError, nats.errors.NoServersError, nats.errors.StaleConnectionError,
             nats.errors.OutboundBufferLimitError, nats.errors.FlushTimeoutError,
             nats.js.errors.NoStreamResponseError, nats.js.errors.ServiceUnavailableError, asyncio.TimeoutError,
             OSError)


class Names:
    """The JetStream names of one swarm (`ns`, its name): the mail stream (a work queue, subject per mailbox
    `<ns>.mail.<box>`, each stored message republished as headers to `<ns>.arrived.<box>`), the kept stream (claimed copies `<ns>.read.<box>.<id>`, set-aside ones
    `<ns>.bad.<box>.<id>`), the registry bucket (mailbox -> role) and the claims bucket (`<box>.<seq>` -> the
    claimer's token: the commit point of a claim)."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.mail_stream, self.kept_stream, self.bucket = f"MAIL_{ns}", f"MAILKEPT_{ns}", f"MAILBOXES_{ns}"
        self.claims = f"MAILCLAIMS_{ns}"

    def mail(self, box: str) -> str:
        return f"{self.ns}.mail.{box}"

    def arrived(self, box: str) -> str:
        """Where the server republishes (headers only) each message it has stored for `box`: a reader woken
        here finds the message in the stream, as it might not when woken by the publish itself."""
        return f"{self.ns}.arrived.{box}"

    def read(self, box: str, message_id: str) -> str:
        return f"{self.ns}.read.{box}.{message_id}"

    def bad(self, box: str, name: str = "*") -> str:
        return f"{self.ns}.bad.{box}.{name}"


class NatsLink:
    """A connection (made on first use, reconnecting by itself) with its JetStream context and registry.

    `arrival_hooks` are called (on the loop's thread) after every reconnection: mail may have arrived while
    the link was down, unseen by core subscriptions."""

    def __init__(self, settings: TransportSettings, *, deadline: float = DEADLINE) -> None:
        self.settings = settings
        self.names = Names(settings.namespace)
        self.deadline = deadline
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.kv: KeyValue | None = None
        self.claims: KeyValue | None = None
        self.arrival_hooks: set[Callable[[], None]] = set()
        self._connecting: asyncio.Lock | None = None
        self._first_connect = False
        self.failed_tries = 0  # calls that were not answered and were tried again (for tests and benches)
        self.fail_fast = False  # set by a caller that must not wait through an outage (the supervisor's step):
        # a call made, or due to be tried again, while the connection is down fails at once (TransportUnavailable)

    def connection(self) -> Client:
        """The live connection (inside an action passed to `call`, where it is always made)."""
        assert self.nc is not None, "connection() outside NatsLink.call"
        return self.nc

    def call(self, action: Callable[[JetStreamContext], Awaitable[T]], what: str) -> T:
        """Run `action(js)` on the loop, retried until answered or the deadline; `what` names it in errors."""
        return natsloop.run(self._retrying(action, what))

    def down(self) -> bool:
        """Whether the connection, once made, is down now (nats-py is making it again); never waits."""
        nc = self.nc
        return nc is not None and not nc.is_closed and not nc.is_connected

    async def _retrying(self, action: Callable[[JetStreamContext], Awaitable[T]], what: str) -> T:
        deadline = time.monotonic() + self.deadline
        pause, last = BACKOFF[0], "no answer"
        while True:
            if self.fail_fast and self.down():
                raise TransportUnavailable(f"cannot {what}: the connection to the NATS server at {self.settings.url} "
                                           "is down (being made again)")
            try:
                js = await self._ready(deadline)
                return await action(js)
            except RETRYABLE as exc:
                last = f"{type(exc).__name__}: {exc}".rstrip(": ")
                self.failed_tries += 1
            if time.monotonic() + pause > deadline:
                raise TransportUnavailable(f"cannot {what}: the NATS server at {self.settings.url} did not answer "
                                           f"within {self.deadline:g} s ({last}); is it running?")
            await asyncio.sleep(pause)  # a retry's backoff: the server is down or restarting
            pause = min(pause * 2, BACKOFF[1])

    async def _ready(self, deadline: float) -> JetStreamContext:
        if self.js is not None and self.nc is not None and not self.nc.is_closed:
            return self.js
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self.js is None or self.nc is None or self.nc.is_closed:
                await self._connect(deadline)
        assert self.js is not None
        return self.js

    async def _connect(self, deadline: float) -> None:
        """Connect (nats-py tries again by itself while the server is down; the deadline bounds it) and declare
        the streams and the bucket. A refused login ends the tries at once (TransportConfigError)."""
        self._first_connect = True
        try:
            nc = await asyncio.wait_for(nats.connect(**self._options()), max(0.1, deadline - time.monotonic()))
        finally:
            self._first_connect = False
        js = nc.jetstream(timeout=REQUEST_TIMEOUT)
        await self._declare(js)
        kv = await _bucket(js, self.names.bucket, None)
        claims = await _bucket(js, self.names.claims, KEEP_CLAIMS)
        self.nc, self.js, self.kv, self.claims = nc, js, kv, claims

    async def _on_error(self, exc: Exception) -> None:
        """nats-py's error callback: while connecting, a refused login or a failed TLS handshake ends the
        connect at once (raised through it: trying again cannot help); other errors are left to the caller's
        retry, which reports the last one at its deadline."""
        if not self._first_connect:
            return
        if "authorization" in str(exc).lower():
            raise self._refused()
        if isinstance(exc, (ssl.SSLError, ssl.CertificateError, *TLS_MISMATCH)):
            reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            raise TransportConfigError(f"TLS with the NATS server at {self.settings.url} failed ({reason}): set "
                                       "transport_ca in swarm.toml to the CA that signed the server's certificate "
                                       "(TLS is required for an address that is not loopback)")

    def _refused(self) -> TransportConfigError:
        return TransportConfigError(f"the NATS server at {self.settings.url} refused the login: check "
                                    "transport_credentials in swarm.toml")

    def _options(self) -> dict[str, Any]:
        settings, creds = self.settings, self.settings.credentials
        options: dict[str, Any] = {
            "servers": [settings.url], "name": "agentmail", "allow_reconnect": True, "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.1, "connect_timeout": REQUEST_TIMEOUT, "reconnected_cb": self._reconnected,
            "error_cb": self._on_error, "disconnected_cb": _ignore_event, "closed_cb": _ignore_event,
            # a link cut without a word (no RST) is noticed by unanswered pings: within ~6 s, not nats-py's 4 min
            "ping_interval": PING_INTERVAL, "max_outstanding_pings": MAX_OUTSTANDING_PINGS}
        if settings.tls is not None:
            options["tls"] = settings.tls
            options["tls_hostname"] = settings.host.strip("[]")
        if creds is not None and creds.creds_file:
            options["user_credentials"] = str(creds.path)
        elif creds is not None and creds.nkey_seed:
            options["nkeys_seed_str"] = creds.nkey_seed
        elif creds is not None:
            options["user"], options["password"] = creds.user, creds.password
        return options

    async def _declare(self, js: JetStreamContext) -> None:
        names = self.names
        for config in (
            StreamConfig(name=names.mail_stream, subjects=[names.mail("*")], retention=RetentionPolicy.WORK_QUEUE,
                         storage=StorageType.FILE, duplicate_window=DUPLICATE_WINDOW, allow_direct=True,
                         republish=RePublish(src=names.mail("*"), dest=names.arrived("{{wildcard(1)}}"),
                                             headers_only=True)),
            StreamConfig(name=names.kept_stream, subjects=[names.read("*", "*"), names.bad("*")],
                         storage=StorageType.FILE, max_age=KEEP_READ, max_msgs_per_subject=1,
                         duplicate_window=DUPLICATE_WINDOW, allow_direct=True),
        ):
            try:
                await js.stream_info(config.name)
            except nats.js.errors.NotFoundError:
                try:
                    await js.add_stream(config)
                except nats.js.errors.BadRequestError:
                    pass  # another process made it meanwhile

    async def _reconnected(self) -> None:
        for hook in list(self.arrival_hooks):
            hook()

    def close(self) -> None:
        """Close the connection (pending publishes are flushed first); the link reconnects if used again."""
        nc, self.nc, self.js, self.kv, self.claims = self.nc, None, None, None, None
        if nc is not None and not nc.is_closed:
            try:
                natsloop.run(nc.close(), timeout=REQUEST_TIMEOUT * 2)
            except (TimeoutError, *RETRYABLE):
                pass


async def _bucket(js: JetStreamContext, name: str, ttl: float | None) -> KeyValue:
    """The key-value bucket `name` (file storage, one value a key, kept `ttl` s or forever), made if missing."""
    try:
        return await js.key_value(name)
    except nats.js.errors.BucketNotFoundError:
        return await js.create_key_value(bucket=name, history=1, ttl=ttl, storage=StorageType.FILE)


async def bucket_keys(js: JetStreamContext, bucket: str) -> list[str]:
    """The keys in key-value bucket `bucket` now, sorted (a deleted key's too: reading it raises KeyDeletedError).

    From the bucket's stream's own count per subject (one `STREAM.INFO` request with a subjects filter), not
    nats-py's `KeyValue.keys()`, whose watcher may end its listing before a key already on its way is counted and
    report none, or only some (nats-io/nats.py#842; 3 reads in 1,800 under load, measured here)."""
    prefix = f"$KV.{bucket}."
    info = await js.stream_info(f"KV_{bucket}", subjects_filter=f"{prefix}>")
    return sorted(subject.removeprefix(prefix) for subject in info.state.subjects or {})


_links: dict[tuple[object, ...], NatsLink] = {}
_links_lock = threading.Lock()


def shared_link(settings: TransportSettings) -> NatsLink:
    """The process's link to the server and swarm of `settings` (one connection however many post offices
    are made: each costs a handshake and the streams' check otherwise)."""
    key = (settings.url, settings.namespace, settings.credentials, settings.tls is None, os.getpid())
    with _links_lock:
        link = _links.get(key)
        if link is None:
            link = _links[key] = NatsLink(settings)
        return link


async def _ignore_event() -> None:
    """A disconnection or close: the next call reconnects or reports it."""


async def direct_batch(nc: Client, stream: str, subject: str, seq: int, batch: int) -> tuple[list[Msg], int]:
    """Up to `batch` messages of `stream` on `subject` from sequence `seq` on, in one direct-get request
    (JetStream's batched direct get, server 2.11+: the messages, then an end-of-batch status 204 that says
    how many more are pending). Returns (messages, pending). nats.errors.TimeoutError if the batch stalls."""
    inbox = nc.new_inbox()
    replies: asyncio.Queue[Msg] = asyncio.Queue()
    subscription = await nc.subscribe(inbox, cb=replies.put)
    try:
        request = json.dumps({"seq": seq, "next_by_subj": subject, "batch": batch}).encode()
        await nc.publish(f"$JS.API.DIRECT.GET.{stream}", request, reply=inbox)
        found: list[Msg] = []
        while True:
            try:
                reply = await asyncio.wait_for(replies.get(), REQUEST_TIMEOUT)
            except asyncio.TimeoutError:
                raise nats.errors.TimeoutError from None
            status = (reply.headers or {}).get("Status")
            if status == "404":
                return found, 0
            if status == "204":
                return found, int((reply.headers or {}).get("Nats-Num-Pending", "0") or 0)
            if status:
                raise nats.errors.TimeoutError  # 408 and the like: the server is busy; the caller tries again
            found.append(reply)
    finally:
        await subscription.unsubscribe()

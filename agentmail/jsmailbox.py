"""One agent's mailbox on NATS JetStream (the layout is described in `agentmail.jetstream`)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RawStreamMsg

from protocol import InvalidMessage, Message, MessageType, parse_message

from agentmail import natsloop
from agentmail.mailbox import Delivered, check_message_id
from agentmail.natslink import REQUEST_TIMEOUT, NatsLink, direct_batch

PEEK_BATCH = 256  # messages per direct-get request when listing a mailbox
FETCH_WAIT = 0.25  # seconds a claim waits for the consumer to hand out a message the peek saw (others hold it)
LEASE = 60.0  # seconds a message handed out by a consumer stays with its taker before it is offered again
NO_MESSAGE_FOUND = 10057  # JetStream's error code for a sequence that is not (or no longer) in the stream
NAME_HEADER, REASON_HEADER, SEQ_HEADER = "Swarm-Name", "Swarm-Reason", "Swarm-Seq"


def box_token(agent: str) -> str:
    """The agent's name as one subject token, consumer-name and key part: `.` becomes `=`."""
    return agent.replace(".", "=")


def _name(seq: int, message_id: str) -> str:
    return f"{seq:012d}-{message_id}.json"


@dataclass
class _Arrivals:
    """A core subscription on a mailbox's arrivals subject that signals each one (`stop()` ends it)."""

    link: NatsLink
    callback: Callable[[], None]
    subscription: object

    def stop(self) -> None:
        self.link.arrival_hooks.discard(self.callback)
        subscription, self.subscription = self.subscription, None
        if subscription is not None and self.link.nc is not None and not self.link.nc.is_closed:
            try:
                natsloop.run(subscription.unsubscribe(), timeout=REQUEST_TIMEOUT)  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - a link that went down took the subscription with it
                pass


class JetStreamMailbox:
    """One agent's mailbox on JetStream (`agentmail.transport.MailboxAPI`); safe to share between threads."""

    def __init__(self, link: NatsLink, agent: str, *, max_size: int = 1 << 20) -> None:
        self.link = link
        self.name = agent
        self.max_size = max_size
        self.box = box_token(agent)
        names = link.names
        self.subject, self.stream, self.kept = names.mail(self.box), names.mail_stream, names.kept_stream
        self.durable = f"box_{self.box}"
        self.path = None  # no file: see `location`
        self.location = f"{link.settings.url} {self.subject}"
        self._pull: object | None = None

    def __repr__(self) -> str:
        return f"JetStreamMailbox({self.name!r})"

    # -- delivery -------------------------------------------------------------------------------------

    def deliver(self, payload: bytes, message_id: str) -> str:
        """Publish `payload` and wait for the server's acknowledgement (retried until the deadline, then
        TransportUnavailable); a retried id is stored once. Returns the message's name in the mailbox."""
        headers = {"Nats-Msg-Id": f"{message_id}.{self.box}"}

        async def publish(js: JetStreamContext) -> int:
            ack = await js.publish(self.subject, payload, stream=self.stream, headers=headers, timeout=REQUEST_TIMEOUT)
            return ack.seq

        return _name(self.link.call(publish, f"deliver {message_id} to {self.name}"), message_id)

    # -- reading --------------------------------------------------------------------------------------

    def list(self, limit: int | None = None) -> list[Delivered]:
        """Unread messages in delivery order (at most `limit`); malformed ones are set aside on the way."""
        return self._peek(limit)

    def scan(self, seen: set[str]) -> list[Delivered]:
        """Unread messages not in `seen`, in order; `seen` becomes the names of all unread ones."""
        unread = self._peek(None)
        names = {d.name for d in unread}
        seen.intersection_update(names)
        fresh = [d for d in unread if d.name not in seen]
        seen.update(names)
        return fresh

    def claim(self, message_id: str | None = None) -> Delivered | None:
        """Claim the oldest unread message (handed out by the mailbox's durable consumer), or the one with
        `message_id`; None if there is none (left)."""
        if message_id is not None:
            check_message_id(message_id)
            found = next((d for d in self._peek(None) if d.message.id == message_id), None)
            return None if found is None else self.claim_loaded(found)
        while oldest := self._peek(1):
            taken = self._take_next()  # None: the consumer had nothing for us in time, or a rival won the claim
            if taken is not None or (taken := self.claim_loaded(oldest[0])) is not None:
                return taken
        return None

    def claim_loaded(self, delivered: Delivered) -> Delivered | None:
        """Claim a message read by `list`/`scan`: keep a copy for `read_claimed`, then remove it from the work
        queue; None if another consumer removed it first."""
        payload = delivered.message.to_json().encode()
        headers = {"Nats-Msg-Id": f"read.{self.box}.{delivered.message.id}", NAME_HEADER: delivered.name,
                   SEQ_HEADER: str(delivered.seq)}

        token = _token()

        async def commit(js: JetStreamContext) -> bool:
            await js.publish(self.link.names.read(self.box, delivered.message.id), payload, stream=self.kept,
                             headers=headers, timeout=REQUEST_TIMEOUT)
            return await self._commit(delivered.seq, token)

        won = self.link.call(commit, f"claim {delivered.message.id} from {self.name}")
        return delivered if won else None

    def read_claimed(self, message_id: str) -> Delivered | None:
        """A message this mailbox claimed (kept KEEP_READ s), or None."""
        subject = self.link.names.read(self.box, check_message_id(message_id))

        async def get(js: JetStreamContext) -> RawStreamMsg | None:
            try:
                return await js.get_msg(self.kept, subject=subject, direct=True)
            except nats.js.errors.NotFoundError:
                return None

        raw = self.link.call(get, f"read {message_id} of {self.name}")
        if raw is None or raw.data is None:
            return None
        headers = raw.headers or {}
        seq = int(headers.get(SEQ_HEADER, "0") or 0)
        return Delivered(seq, headers.get(NAME_HEADER) or _name(seq, message_id), None, parse_message(raw.data))

    def set_aside(self, delivered: Delivered, reason: str) -> None:
        """Move an unread message to the kept stream's bad subject with `reason`; nothing if already claimed."""
        self._quarantine(delivered.seq, delivered.message.id, delivered.name, delivered.message.to_json().encode(),
                         reason)

    def bad(self) -> list[tuple[str, str]]:
        """The messages set aside, oldest first, as (name, reason)."""
        subject = self.link.names.bad(self.box)

        async def read(js: JetStreamContext) -> list[tuple[str, str]]:
            found, seq = [], 1
            while True:
                try:
                    raw = await js.get_msg(self.kept, seq=seq, subject=subject, next=True, direct=True)
                except nats.js.errors.NotFoundError:
                    return found
                headers = raw.headers or {}
                found.append((headers.get(NAME_HEADER, str(raw.seq)), headers.get(REASON_HEADER, "(no reason recorded)")))
                seq = raw.seq + 1

        return self.link.call(read, f"list the bad mail of {self.name}")

    # -- waiting --------------------------------------------------------------------------------------

    def on_arrival(self, callback: Callable[[], None], *, polling: bool = False) -> _Arrivals:
        """Call `callback` (from the NATS loop's thread) for each message the server has stored in this mailbox
        (its republished headers) and after every reconnection. `polling` is accepted for the interface and means nothing here."""
        async def signal(_msg: object) -> None:
            callback()

        async def subscribe(js: JetStreamContext) -> object:
            assert self.link.nc is not None
            subscription = await self.link.nc.subscribe(self.link.names.arrived(self.box), cb=signal)
            await self.link.nc.flush(timeout=REQUEST_TIMEOUT)  # the server knows of it before we scan
            return subscription

        subscription = self.link.call(subscribe, f"watch the mailbox of {self.name}")
        self.link.arrival_hooks.add(callback)
        return _Arrivals(self.link, callback, subscription)

    def watch(self, *, claim: bool = False, polling: bool = False, stop: threading.Event | None = None,
              timeout: float | None = None) -> Iterator[Delivered]:
        """Yield each unread message once, in order, those waiting first (see MailboxAPI.watch)."""
        from agentmail.watch import watch_mailbox

        return watch_mailbox(self, claim=claim, polling=polling, stop=stop, timeout=timeout)

    def wait(self, *, types: set[MessageType] | None = None, task: str | None = None,
             timeout: float | None = None, claim: bool = True) -> Delivered | None:
        """Block until a matching message is unread; claim and return it (None on timeout)."""
        from agentmail.transport import wait_in

        return wait_in(self, types=types, task=task, timeout=timeout, claim=claim)

    # -- inside ---------------------------------------------------------------------------------------

    def _peek(self, limit: int | None) -> list[Delivered]:
        """The unread messages (at most `limit`), read in batched direct gets: nothing is handed out."""
        async def read(js: JetStreamContext) -> list[Msg]:
            found: list[Msg] = []
            seq, pending = 1, 1
            while pending and (limit is None or len(found) < limit):
                want = PEEK_BATCH if limit is None else min(PEEK_BATCH, limit - len(found))
                batch, pending = await direct_batch(self.link.connection(), self.stream, self.subject, seq, want)
                if not batch:
                    break
                found.extend(batch)
                seq = int(batch[-1].headers["Nats-Sequence"]) + 1  # type: ignore[index]
            return found

        result = []
        for raw in self.link.call(read, f"read the mailbox of {self.name}"):
            delivered = self._parse(int(raw.headers["Nats-Sequence"]), raw.data or b"")  # type: ignore[index]
            if delivered is not None:
                result.append(delivered)
        return result

    def _parse(self, seq: int, data: bytes) -> Delivered | None:
        """The message stored at `seq`; a malformed one is set aside (None)."""
        try:
            if len(data) > self.max_size:
                raise InvalidMessage(f"larger than the size limit of {self.max_size} bytes")
            message: Message = parse_message(data)
        except InvalidMessage as exc:
            self._quarantine(seq, f"seq{seq}", f"{seq:012d}-unreadable", data, str(exc))
            return None
        return Delivered(seq, _name(seq, message.id), None, message)

    def _take_next(self) -> Delivered | None:
        """One message from the durable consumer, claimed; None if it was claimed by someone else first.
        The consumer's explicit ack follows the claim (an ack in a work queue removes the message too)."""
        async def take(js: JetStreamContext) -> Msg | None:
            if self._pull is None:
                config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=LEASE, max_deliver=-1,
                                        filter_subject=self.subject)
                self._pull = await js.pull_subscribe(self.subject, durable=self.durable, stream=self.stream,
                                                     config=config)
            try:
                msgs = await self._pull.fetch(1, timeout=FETCH_WAIT)  # type: ignore[attr-defined]
            except nats.errors.TimeoutError:
                return None
            return msgs[0]

        msg = self.link.call(take, f"take the next message of {self.name}")
        if msg is None:
            return None
        delivered = self._parse(msg.metadata.sequence.stream, msg.data)
        claimed = None if delivered is None else self.claim_loaded(delivered)

        async def ack(js: JetStreamContext) -> None:
            await msg.ack()

        self.link.call(ack, f"acknowledge a message of {self.name}")
        return claimed

    def _quarantine(self, seq: int, message_id: str, name: str, payload: bytes, reason: str) -> None:
        headers = {"Nats-Msg-Id": f"bad.{self.box}.{message_id}", NAME_HEADER: name,
                   REASON_HEADER: " ".join(reason.split())[:1000]}

        token = _token()

        async def move(js: JetStreamContext) -> None:
            await js.publish(self.link.names.bad(self.box, message_id), payload, stream=self.kept, headers=headers,
                             timeout=REQUEST_TIMEOUT)
            await self._commit(seq, token)


        self.link.call(move, f"set aside {name} of {self.name}")


    async def _commit(self, seq: int, token: bytes) -> bool:
        """Take message `seq` for the claimer `token`, then remove it from the work queue; False if a rival took
        it. The commit point is the creation of the key `<box>.<seq>` in the claims bucket (of two creators
        exactly one succeeds); a call tried again after its answer was lost finds its own token there, so
        a claim that took effect is never reported lost. Every removal goes through here."""
        claims = self.link.claims
        assert claims is not None
        key = f"{self.box}.{seq}"
        try:
            await claims.create(key, token)
        except nats.js.errors.KeyWrongLastSequenceError:
            entry = await claims.get(key)
            if entry.value != token:
                return False
        await _remove(self.link.connection(), self.stream, seq)
        return True


def _token() -> bytes:
    """A claimer's token: unique to one claim, the same for every try of it."""
    return uuid.uuid4().hex.encode()


async def _remove(nc: Client, stream: str, seq: int) -> bool:
    """Remove message `seq` from `stream`; False if it is gone already (another consumer won).

    Without erasing it on disk (`no_erase`): the server's default overwrites the message, six times slower,
    and a copy is kept anyway."""
    request = json.dumps({"seq": seq, "no_erase": True}).encode()
    reply = await nc.request(f"$JS.API.STREAM.MSG.DELETE.{stream}", request, timeout=REQUEST_TIMEOUT)
    answer = json.loads(reply.data)
    error = answer.get("error")
    if error is None:
        return bool(answer.get("success"))
    if error.get("err_code") == NO_MESSAGE_FOUND:
        return False
    raise nats.js.errors.APIError.from_error(error)

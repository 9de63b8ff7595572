"""The JetStream transport: Agent Mail over NATS JetStream, for swarms whose agents run on several machines.

Layout (names from `agentmail.natslink.Names`, `<ns>` the swarm's name, `<box>` the agent's name with `.` as
`=`, since `.` separates subject tokens and agent names never hold `=`):
- stream `MAIL_<ns>`, a work queue on file storage, subject `<ns>.mail.<box>` per mailbox: what is in it is
  unread. A send publishes with `Nats-Msg-Id: <message id>.<box>` (the message id, made unique per mailbox
  because a role's fan-out puts one id in several) and is retried until the server acknowledges it: a retry
  that lands twice is stored once (JetStream's de-duplication window).
- a durable pull consumer per mailbox (`box_<box>`, explicit acks) hands out the oldest unread message
  (`claim()`); peeking (`list`, `scan`) reads the stream directly and hands nothing out.
- a claim is committed by creating the key `<box>.<seq>` with the claimer's token in the bucket
  `MAILCLAIMS_<ns>` (of two racing claimers exactly one creation succeeds, as exactly one Maildir rename does;
  a claim tried again after a lost answer finds its own token), then the message is removed from the work
  queue; a copy goes first to `MAILKEPT_<ns>` under `<ns>.read.<box>.<id>` (read_claimed), and a set-aside one
  under `<ns>.bad.<box>.<id>` with its reason.
- the key-value bucket `MAILBOXES_<ns>` maps each mailbox to its role (register, agents, role_of).
Waking: the stream republishes each stored message's headers to `<ns>.arrived.<box>`; a core subscription there
signals each arrival (after the store: a subscription to the mail subject itself may fire before the message
can be read), and every reconnection signals too.
"""

from __future__ import annotations

import nats.js.errors
from nats.js import JetStreamContext

from agentmail.errors import UnknownRecipient
from agentmail.jsmailbox import JetStreamMailbox, box_token
from agentmail.natslink import NatsLink, bucket_keys, shared_link
from agentmail.transportsettings import TransportSettings


class JetStreamTransport:
    """`agentmail.transport.Transport` over NATS JetStream: mailboxes are subjects, the registry a KV bucket.

    One connection per process and server (`shared_link`), made on first use; every call is retried until
    the server answers or `deadline` s pass (then `TransportUnavailable`). `max_size` bounds a message read back (bytes)."""

    def __init__(self, settings: TransportSettings, *, max_size: int = 1 << 20, deadline: float | None = None) -> None:
        self.settings = settings
        self.max_size = max_size
        self.link = shared_link(settings) if deadline is None else NatsLink(settings, deadline=deadline)
        self._known: dict[str, JetStreamMailbox] = {}

    def __repr__(self) -> str:
        return f"JetStreamTransport({self.settings.url!r}, ns={self.settings.namespace!r})"

    def open(self, agent: str, *, create: bool) -> JetStreamMailbox:
        """The mailbox of `agent`; made (registered without a role) when missing and `create`, else
        UnknownRecipient."""
        if (cached := self._known.get(agent)) is not None:
            return cached
        key = box_token(agent)

        async def look(js: JetStreamContext) -> bool:
            assert self.link.kv is not None
            try:
                await self.link.kv.get(key)
                return True
            except nats.js.errors.KeyNotFoundError:
                if not create:
                    return False
            try:
                await self.link.kv.create(key, b"")
            except nats.js.errors.KeyWrongLastSequenceError:
                pass  # registered by another process meanwhile
            return True

        if not self.link.call(look, f"open the mailbox of {agent}"):
            known = ", ".join(self.agents()) or "none"
            raise UnknownRecipient(f"unknown recipient {agent!r}: known agents are {known}; register it first")
        return self._handle(agent)

    def register(self, agent: str, role: str) -> JetStreamMailbox:
        """Record `agent` with `role` in the registry bucket (idempotent) and return its mailbox."""
        async def put(js: JetStreamContext) -> None:
            assert self.link.kv is not None
            await self.link.kv.put(box_token(agent), role.encode())

        self.link.call(put, f"register {agent}")
        return self._handle(agent)

    def agents(self, role: str | None = None) -> list[str]:
        """Agents that have a mailbox (registered with `role`, if given), sorted."""
        if role is not None:
            return sorted(name for name, has in self._roles().items() if has == role)

        async def keys(js: JetStreamContext) -> list[str]:
            return [key.replace("=", ".") for key in await bucket_keys(js, self.link.names.bucket)]

        return sorted(self.link.call(keys, "list the agents"))

    def role_of(self, agent: str) -> str | None:
        """The role `agent` was registered with; None if it was not (or only made by a delivery)."""
        return self._roles().get(agent) or None

    def close(self) -> None:
        """Close the connection (shared by the process's transports to the same server: any of them that is
        used again reconnects)."""
        self.link.close()

    def unreachable(self) -> bool:
        """Whether the connection, once made, is down now (nats-py is making it again): a call would wait for
        the server, up to the link's deadline. False before the first connection (a call makes it)."""
        return self.link.down()

    def _roles(self) -> dict[str, str]:
        async def read(js: JetStreamContext) -> dict[str, str]:
            assert self.link.kv is not None
            roles = {}
            for key in await bucket_keys(js, self.link.names.bucket):
                try:
                    entry = await self.link.kv.get(key)
                except nats.js.errors.KeyNotFoundError:
                    continue
                roles[key.replace("=", ".")] = (entry.value or b"").decode(errors="replace")
            return roles

        return self.link.call(read, "list the agents")

    def _handle(self, agent: str) -> JetStreamMailbox:
        mailbox = self._known.get(agent)
        if mailbox is None:
            mailbox = self._known[agent] = JetStreamMailbox(self.link, agent, max_size=self.max_size)
        return mailbox

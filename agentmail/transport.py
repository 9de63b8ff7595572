"""The transport interface of Agent Mail: where mailboxes live and how a message gets into and out of one.

Two implementations: the Maildir files under `<home>/mail/` (`agentmail.files.FileTransport` and
`agentmail.mailbox.Mailbox`, the embedded default) and NATS JetStream (`agentmail.jetstream`), chosen by
`transport = "nats://host:port"` in swarm.toml. `PostOffice` speaks to either through these two protocols:
it stamps, checks the size, expands roles and asks each recipient's mailbox to `deliver`; readers `list`,
`claim` (of two racing consumers exactly one wins), `set_aside` what they cannot handle (`bad` lists it),
and `wait`/`watch` for arrivals. Acknowledging a message (`PostOffice.ack`) is a message sent back, the same
on both transports.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from protocol import MessageType

if TYPE_CHECKING:
    from agentmail.mailbox import Delivered


class ArrivalHandle(Protocol):
    """A running arrival watch; `stop()` ends it (no call back starts after it returns)."""

    def stop(self) -> None: ...


@runtime_checkable
class MailboxAPI(Protocol):
    """One agent's mailbox on some transport. `Delivered.seq` orders a mailbox's messages (delivery order);
    `Delivered.name` is unique in the mailbox; `Delivered.path` is the file on the file transport, else None.
    Every method may raise `MailError` (on JetStream, `TransportUnavailable` when the server cannot be
    reached within the transport's deadline)."""

    name: str

    def deliver(self, payload: bytes, message_id: str) -> str:
        """Store serialized, validated bytes as one unread message; return its name. Delivering the same
        `message_id` again (a retried send) never makes a second unread copy on JetStream (de-duplication)."""
        ...

    def list(self, limit: int | None = None) -> list[Delivered]:
        """Unread messages, oldest first, at most `limit`; malformed ones are set aside on the way."""
        ...

    def scan(self, seen: set[str]) -> list[Delivered]:
        """Unread messages whose names are not in `seen`, oldest first; `seen` is updated to the unread set."""
        ...

    def claim(self, message_id: str | None = None) -> Delivered | None:
        """Claim the oldest unread message (or the one with `message_id`); None if there is none left."""
        ...

    def claim_loaded(self, delivered: Delivered) -> Delivered | None:
        """Claim a message read by `list`/`scan`; None if another consumer claimed it first."""
        ...

    def read_claimed(self, message_id: str) -> Delivered | None:
        """A message already claimed, or None."""
        ...

    def set_aside(self, delivered: Delivered, reason: str) -> None:
        """Move an unread message out of the way, kept with `reason` (see `bad`)."""
        ...

    def bad(self) -> list[tuple[str, str]]:
        """The messages set aside, each as (name, reason), oldest first."""
        ...

    def on_arrival(self, callback: Callable[[], None], *, polling: bool = False) -> ArrivalHandle:
        """Call `callback` (from another thread; it should only signal) when mail may have arrived."""
        ...

    def watch(self, *, claim: bool = False, polling: bool = False, stop: threading.Event | None = None,
              timeout: float | None = None) -> Iterator[Delivered]:
        """Yield each unread message once, oldest first, those already waiting included, until `stop` is set
        or `timeout` s have passed; with `claim`, each is claimed first (those another consumer won are skipped)."""
        ...

    def wait(self, *, types: set[MessageType] | None = None, task: str | None = None,
             timeout: float | None = None, claim: bool = True) -> Delivered | None:
        """Block until a message of one of `types` (about `task`) is unread; claim and return it (None on
        timeout). Other messages stay unread."""
        ...


@runtime_checkable
class Transport(Protocol):
    """Where a home's mailboxes live. `open` creates a missing mailbox only with `create` (else
    `UnknownRecipient`); `register` creates it and records the agent's role."""

    def open(self, agent: str, *, create: bool) -> MailboxAPI:
        """The mailbox of `agent` (a validated agent name)."""
        ...

    def register(self, agent: str, role: str) -> MailboxAPI:
        """Create `agent`'s mailbox if needed (idempotent) and record `role`."""
        ...

    def agents(self, role: str | None = None) -> list[str]:
        """Names of the agents that have a mailbox (of `role` only, if given), sorted."""
        ...

    def role_of(self, agent: str) -> str | None:
        """The role `agent` was registered with; None if it never was."""
        ...

    def close(self) -> None:
        """Release what the transport holds (a connection); safe to call twice."""
        ...

    def unreachable(self) -> bool:
        """Whether the transport knows now, without asking anyone, that a call would wait for its server (its
        connection is down and being made again); never waits itself."""
        ...


def wait_in(mailbox: MailboxAPI, *, types: set[MessageType] | None, task: str | None, timeout: float | None,
            claim: bool) -> Delivered | None:
    """`MailboxAPI.wait` over `watch` and `claim_loaded`, for any transport."""
    for delivered in mailbox.watch(timeout=timeout):
        message = delivered.message
        if (types is None or message.type in types) and (task is None or message.task == task):
            if not claim:
                return delivered
            if (claimed := mailbox.claim_loaded(delivered)) is not None:
                return claimed
    return None

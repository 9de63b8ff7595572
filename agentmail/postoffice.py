"""The post office: the mailboxes of one home, on its transport (files under `<home>/mail/<agent>/`, or NATS
JetStream when swarm.toml says `transport = "nats://host:port"`), and sending between them."""

import functools
import os
import socket
from pathlib import Path

from protocol import Message, MessageType, make_message, validate_agent_name
from protocol.messages import Origin
from protocol.names import ROLE_PREFIX

from agentmail.errors import MessageTooLarge, UnknownRecipient
from agentmail.files import FileTransport
from agentmail.mailbox import Delivered
from agentmail.transport import MailboxAPI, Transport
from agentmail.transportsettings import read_transport


@functools.cache
def _hostname() -> str:
    return socket.gethostname()


def open_transport(home: Path, *, durable: bool = True, max_size: int = 1 << 20) -> Transport:
    """The transport the home at `home` chooses in its swarm.toml: JetStream for `transport = "nats://..."`,
    else the files. TransportConfigError for a bad address or credentials file."""
    settings = read_transport(home)
    if settings is None:
        return FileTransport(home, durable=durable, max_size=max_size)
    from agentmail.jetstream import JetStreamTransport  # nats-py is loaded only by homes that use it

    return JetStreamTransport(settings, max_size=max_size)


class PostOffice:
    """Deliver messages into the mailboxes of the home at `home`, on the transport it chooses (or `transport`).

    `strict=None` means strict iff `<home>/swarm.toml` exists: a swarm home registers its agents, so mail
    to an unknown name is a mistake to report. A bare home creates a mailbox on first delivery.
    """

    def __init__(self, home: Path | str, *, durable: bool = True, max_size: int = 1 << 20,
                 strict: bool | None = None, transport: Transport | None = None) -> None:
        self.home = Path(home)
        self.root = self.home / "mail"
        self.durable = durable
        self.max_size = max_size
        self.strict = (self.home / "swarm.toml").exists() if strict is None else strict
        self.transport = transport or open_transport(self.home, durable=durable, max_size=max_size)

    def __repr__(self) -> str:
        return f"PostOffice({str(self.home)!r}, strict={self.strict}, transport={self.transport!r})"

    # -- mailboxes ------------------------------------------------------------------------------------

    def register(self, agent: str, role: str = "worker") -> MailboxAPI:
        """Create `agent`'s mailbox if needed (idempotent) and record its role."""
        validate_agent_name(agent)
        validate_agent_name(role)
        return self.transport.register(agent, role)

    def mailbox(self, agent: str) -> MailboxAPI:
        """The mailbox of `agent`; created if missing, unless the home is strict (then UnknownRecipient)."""
        validate_agent_name(agent)
        return self.transport.open(agent, create=not self.strict)

    def agents(self, role: str | None = None) -> list[str]:
        """Names of the agents that have a mailbox, optionally only those registered with `role`."""
        return self.transport.agents(role)

    def role_of(self, agent: str) -> str | None:
        """The role `agent` was registered with, None if it never was."""
        validate_agent_name(agent)
        return self.transport.role_of(agent)

    def close(self) -> None:
        """Release the transport's connection (JetStream); nothing for files."""
        self.transport.close()

    # -- sending --------------------------------------------------------------------------------------

    def send(self, message: Message) -> Message:
        """Deliver `message` to each recipient (roles fan out to their members); return it as delivered.

        The returned copy carries `origin` (pid, uid, host) stamped from this process, never from the
        sender's say-so. Every recipient is resolved before the first delivery, so a refusal delivers
        nothing.
        """
        stamped = message.model_copy(update={"origin": Origin(pid=os.getpid(), uid=os.getuid(), host=_hostname())})
        payload = stamped.to_json().encode()
        if len(payload) > self.max_size:
            raise MessageTooLarge(
                f"message {message.id} is {len(payload)} bytes, over the limit of {self.max_size} bytes: "
                "put large content in a file and send its path"
            )
        mailboxes = [self.transport.open(agent, create=not self.strict) for agent in self._expand(message.to)]
        for mailbox in mailboxes:
            mailbox.deliver(payload, message.id)
        return stamped

    def ack(self, agent: str, delivered: Delivered) -> Message:
        """Send ACK{message_id} from `agent` back to the sender of `delivered`, in the same thread."""
        original = delivered.message
        ack = make_message(
            MessageType.ACK, agent, original.sender, {"message_id": original.id},
            thread=original.thread, reply_to=original.id,
        )
        return self.send(ack)

    def _expand(self, recipients: list[str]) -> list[str]:
        """Agent names for the recipients, `role:<r>` replaced by every member of r, without duplicates."""
        agents: dict[str, None] = {}
        for recipient in recipients:
            if recipient.startswith(ROLE_PREFIX):
                role = recipient[len(ROLE_PREFIX):]
                members = self.agents(role)
                if not members:
                    raise UnknownRecipient(f"no agent has role {role!r}: register one with --role {role} first")
                agents.update(dict.fromkeys(members))
            else:
                agents[recipient] = None
        return list(agents)


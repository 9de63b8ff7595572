"""The post office: the mailboxes of one home (`<home>/mail/<agent>/`), and sending between them."""

import functools
import os
import socket
from pathlib import Path

from protocol import Message, MessageType, make_message, validate_agent_name
from protocol.messages import Origin
from protocol.names import ROLE_PREFIX

from agentmail.errors import MailboxError, MessageTooLarge, UnknownRecipient, UnsafePath
from agentmail.delivery import check_real_dir, make_mailbox_dirs
from agentmail.mailbox import Delivered, Mailbox

ROLE_FILE = "role"


@functools.cache
def _hostname() -> str:
    return socket.gethostname()


class PostOffice:
    """Deliver messages into the mailboxes under `<home>/mail`.

    `strict=None` means strict iff `<home>/swarm.toml` exists: a swarm home registers its agents, so mail
    to an unknown name is a mistake to report. A bare home creates a mailbox on first delivery.
    """

    def __init__(self, home: Path | str, *, durable: bool = True, max_size: int = 1 << 20,
                 strict: bool | None = None) -> None:
        self.home = Path(home)
        self.root = self.home / "mail"
        self.durable = durable
        self.max_size = max_size
        self.strict = (self.home / "swarm.toml").exists() if strict is None else strict
        self._mailboxes: dict[str, Mailbox] = {}

    def __repr__(self) -> str:
        return f"PostOffice({str(self.home)!r}, strict={self.strict})"

    # -- mailboxes ------------------------------------------------------------------------------------

    def register(self, agent: str, role: str = "worker") -> Mailbox:
        """Create `agent`'s mailbox if needed (idempotent) and record its role."""
        validate_agent_name(agent)
        validate_agent_name(role)
        mailbox = self._open(agent, create=True)
        role_file = mailbox.path / ROLE_FILE
        tmp = mailbox.path / f".{ROLE_FILE}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(role + "\n")
        os.replace(tmp, role_file)
        return mailbox

    def mailbox(self, agent: str) -> Mailbox:
        """The mailbox of `agent`; created if missing, unless the home is strict (then UnknownRecipient)."""
        validate_agent_name(agent)
        return self._open(agent, create=not self.strict)

    def agents(self, role: str | None = None) -> list[str]:
        """Names of the agents that have a mailbox, optionally only those registered with `role`."""
        if not os.path.lexists(self.root):
            return []
        check_real_dir(self.root)
        entries = sorted(os.scandir(self.root), key=lambda e: e.name)
        names = [e.name for e in entries if e.is_dir(follow_symlinks=False) and _is_agent_name(e.name)]
        return names if role is None else [n for n in names if self.role_of(n) == role]

    def role_of(self, agent: str) -> str | None:
        """The role `agent` was registered with, None if it never was."""
        validate_agent_name(agent)
        path = self.root / agent / ROLE_FILE
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise UnsafePath(f"cannot read {path}: {exc.strerror}: replace it with a plain file (register again)") from None
        with os.fdopen(fd, "rb") as handle:
            return handle.read(256).decode(errors="replace").strip() or None

    def _open(self, agent: str, *, create: bool) -> Mailbox:
        if (cached := self._mailboxes.get(agent)) is not None:
            return cached
        path = self.root / agent
        if os.path.lexists(self.root):
            check_real_dir(self.root)  # a symlinked mail/ would carry every mailbox out of the home
        if not os.path.lexists(path):
            if not create:
                raise UnknownRecipient(self._unknown(agent))
            self._make_root()
            make_mailbox_dirs(path)
        else:
            check_real_dir(path)
            make_mailbox_dirs(path)  # repairs a missing sub-directory; refuses symlinked ones
        mailbox = Mailbox(path, durable=self.durable, max_size=self.max_size)
        self._mailboxes[agent] = mailbox
        return mailbox

    def _make_root(self) -> None:
        for directory in (self.home, self.root):
            try:
                os.mkdir(directory, 0o700)
            except FileExistsError:
                pass
        if not self.root.is_dir():
            raise MailboxError(f"{self.root} is not a directory")

    def _unknown(self, agent: str) -> str:
        known = ", ".join(self.agents()) or "none"
        return f"unknown recipient {agent!r}: known agents are {known}; register it first"

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
        mailboxes = [self._open(agent, create=not self.strict) for agent in self._expand(message.to)]
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


def _is_agent_name(name: str) -> bool:
    try:
        validate_agent_name(name)
    except ValueError:
        return False
    return True


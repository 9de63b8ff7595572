"""The file transport: one Maildir-style directory per agent under `<home>/mail/` (the embedded default)."""

import os
from pathlib import Path

from protocol import validate_agent_name

from agentmail.delivery import check_real_dir, make_mailbox_dirs
from agentmail.errors import MailboxError, UnknownRecipient, UnsafePath
from agentmail.mailbox import Mailbox

ROLE_FILE = "role"


class FileTransport:
    """The mailboxes under `<home>/mail` (`agentmail.transport.Transport` over files): `mail/<agent>/` with
    tmp/new/cur/bad and a `role` file. Handles are cached; safe to share between threads."""

    def __init__(self, home: Path, *, durable: bool = True, max_size: int = 1 << 20) -> None:
        self.home = home
        self.root = home / "mail"
        self.durable = durable
        self.max_size = max_size
        self._mailboxes: dict[str, Mailbox] = {}

    def __repr__(self) -> str:
        return f"FileTransport({str(self.root)!r})"

    def register(self, agent: str, role: str) -> Mailbox:
        """Create `agent`'s mailbox if needed (idempotent) and record its role in `role` (a tmp/rename write)."""
        mailbox = self.open(agent, create=True)
        role_file = mailbox.path / ROLE_FILE
        tmp = mailbox.path / f".{ROLE_FILE}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(role + "\n")
        os.replace(tmp, role_file)
        return mailbox

    def open(self, agent: str, *, create: bool) -> Mailbox:
        """The mailbox directory of `agent`, made (0700) when missing and `create`; else UnknownRecipient.
        UnsafePath for a symlinked or non-directory path on the way."""
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

    def agents(self, role: str | None = None) -> list[str]:
        """Names of the agents that have a mailbox directory, optionally only those registered with `role`."""
        if not os.path.lexists(self.root):
            return []
        check_real_dir(self.root)
        entries = sorted(os.scandir(self.root), key=lambda e: e.name)
        names = [e.name for e in entries if e.is_dir(follow_symlinks=False) and is_agent_name(e.name)]
        return names if role is None else [n for n in names if self.role_of(n) == role]

    def role_of(self, agent: str) -> str | None:
        """The role in `mail/<agent>/role`; None if it was never registered."""
        path = self.root / agent / ROLE_FILE
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise UnsafePath(f"cannot read {path}: {exc.strerror}: replace it with a plain file (register again)") from None
        with os.fdopen(fd, "rb") as handle:
            return handle.read(256).decode(errors="replace").strip() or None

    def close(self) -> None:
        """Nothing to release: files need no connection."""

    def unreachable(self) -> bool:
        """Never: files need no server."""
        return False

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


def is_agent_name(name: str) -> bool:
    """Whether `name` is a valid agent name (a directory that is not one is no mailbox)."""
    try:
        validate_agent_name(name)
    except ValueError:
        return False
    return True

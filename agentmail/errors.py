"""Errors raised by agentmail: one small hierarchy the CLI maps to one line on stderr and exit 2.

Protocol refusals (`protocol.InvalidName`, `protocol.InvalidMessage`) pass through unchanged: they are
`ProtocolError`s, and a caller handles both families the same way.
"""


class MailError(Exception):
    """Base of every refusal raised by agentmail."""


class UnknownRecipient(MailError):
    """A message addressed to an agent (or role) that has no mailbox in a strict home."""


class MessageTooLarge(MailError):
    """A message whose serialized form is over the post office's size limit."""


class UnsafePath(MailError):
    """A mailbox path (or one of its directories) that is a symlink or not a directory."""


class MailboxError(MailError):
    """A mailbox that cannot be used as asked: a message that is not there, a file that cannot be read."""


class TransportConfigError(MailError):
    """A transport setting in swarm.toml that cannot be used: a malformed address, a credentials file that
    is missing, unreadable or readable by others."""


class TransportUnavailable(MailError):
    """The mail transport's server did not answer (or acknowledge a publish) within the deadline."""

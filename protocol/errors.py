"""Errors raised by the protocol layer.

Every error message names what was wrong and what to do; CLIs print it as one line and exit 2.
"""


class ProtocolError(ValueError):
    """Base of every refusal raised by `protocol`."""


class InvalidName(ProtocolError):
    """An agent name or task id that could be unsafe to build a path from."""


class InvalidMessage(ProtocolError):
    """A message or body that does not validate against its model."""


class InvalidTransition(ProtocolError):
    """A task status change that the transition table does not allow."""

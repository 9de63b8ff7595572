"""Host names and labels: checked before any subject, key, stream or path is built from them."""

import re

from protocol.errors import InvalidName
from protocol.names import printable, validate_label
from swarmd.errors import SwarmError

# No '.': a host name is one token of a NATS subject and part of a key-value key; no upper case, as agent names.
HOST_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
SWARM_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")  # swarm.toml's `name`


class HostError(SwarmError):
    """A host, its name, its credentials or its link to the NATS server that cannot be used."""


def validate_host_name(name: str) -> str:
    """Return `name` if it can name a host, else raise HostError."""
    return _matching(name, HOST_NAME_RE, "host name", "use 1-32 characters of a-z, 0-9, '_' and '-', starting with "
                     "a letter or digit")


def validate_swarm_name(name: str) -> str:
    """Return `name` if it can be a swarm's name (swarm.toml's `name`), else raise HostError."""
    return _matching(name, SWARM_NAME_RE, "swarm name", "use 1-32 characters of a-z, 0-9, '_' and '-', starting "
                     "with a letter or digit (the `name` in the swarm's swarm.toml)")


def validate_labels(labels: list[str]) -> list[str]:
    """Return `labels` sorted without repeats if each is a valid label, else raise HostError."""
    try:
        return sorted({validate_label(label) for label in labels})
    except InvalidName as exc:
        raise HostError(str(exc)) from None


def parse_labels(text: str | None) -> list[str]:
    """`a,b` as given on a command line: the labels, validated (HostError)."""
    return validate_labels([part.strip() for part in (text or "").split(",") if part.strip()])


# `[user@]machine` as ssh takes it, never an option (no leading '-') and nothing a shell would read.
SSH_DESTINATION_RE = re.compile(r"([A-Za-z0-9._][A-Za-z0-9._-]{0,63}@)?[A-Za-z0-9._:][A-Za-z0-9._:-]{0,252}")


def validate_ssh_destination(destination: str) -> str:
    """Return `destination` if ssh can take it as where to connect (`[user@]machine`), else raise HostError."""
    return _matching(destination, SSH_DESTINATION_RE, "ssh destination", "give [user@]machine (letters, digits, "
                     "'.', '_', '-', ':'), as `ssh` takes it")


def _matching(value: str, pattern: re.Pattern[str], what: str, hint: str) -> str:
    """`value` if it is a str that `pattern` matches whole; else HostError `invalid <what> '<value>': <hint>`."""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise HostError(f"invalid {what} {printable(str(value))!r}: {hint}")
    return value

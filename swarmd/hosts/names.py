"""Host names and labels: checked before any subject, key, stream or path is built from them."""

import re

from protocol.errors import InvalidName
from protocol.names import validate_label
from swarmd.errors import SwarmError

# No '.': a host name is one token of a NATS subject and part of a key-value key; no upper case, as agent names.
HOST_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
SWARM_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")  # swarm.toml's `name`


class HostError(SwarmError):
    """A host, its name, its credentials or its link to the NATS server that cannot be used."""


def validate_host_name(name: str) -> str:
    """Return `name` if it can name a host, else raise HostError."""
    if not isinstance(name, str) or not HOST_NAME_RE.fullmatch(name):
        shown = _shown(name)
        raise HostError(f"invalid host name {shown!r}: use 1-32 characters of a-z, 0-9, '_' and '-', "
                        "starting with a letter or digit")
    return name


def validate_swarm_name(name: str) -> str:
    """Return `name` if it can be a swarm's name (swarm.toml's `name`), else raise HostError."""
    if not isinstance(name, str) or not SWARM_NAME_RE.fullmatch(name):
        shown = _shown(name)
        raise HostError(f"invalid swarm name {shown!r}: use 1-32 characters of a-z, 0-9, '_' and '-', "
                        "starting with a letter or digit (the `name` in the swarm's swarm.toml)")
    return name


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
    if not isinstance(destination, str) or not SSH_DESTINATION_RE.fullmatch(destination):
        shown = _shown(destination)
        raise HostError(f"invalid ssh destination {shown!r}: give [user@]machine (letters, digits, '.', '_', "
                        "'-', ':'), as `ssh` takes it")
    return destination


def _shown(value: object) -> str:
    """`value` as an error may print it: escapes for what is not printable ASCII, at most 80 characters."""
    return str(value).encode("unicode_escape").decode("ascii")[:80]

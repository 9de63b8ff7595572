"""`[hosts]` in swarm.toml: where this swarm's worker hosts join, and what this machine's own slots offer."""

from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator

from swarmd.hosts.names import HostError, validate_labels


class HostsSettings(BaseModel):
    """`[hosts]`: worker hosts joined through NATS JetStream (`swarm host join`); unset `url`: no hosts."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, pattern=r"^(nats|tls)://[^\s/@]+$", description=(
        "The NATS server (with JetStream) the hosts join, `nats://host:port` or `tls://host:port` (TLS whenever "
        "the host is not loopback). Unset: `transport` when that is a NATS server, else no hosts (workers run "
        "on this machine only)."))
    credentials: str | None = Field(default=None, description=(
        "A file (mode 0600, relative to the home) with the supervisor's NATS login, in a form `transport_credentials` "
        "takes (`swarm logins` writes one, `supervisor.login`); unset: `transport_credentials`."))
    ca: str | None = Field(default=None, description=(
        "A PEM file (relative to the home) of the authorities that sign the server's TLS certificate; unset: "
        "`transport_ca`, else the system's."))
    ttl: float = Field(default=15.0, ge=1, le=3600, description=(
        "Seconds a host's heartbeat key lives after its last beat; it is the host's lease. A host whose key has "
        "expired, and stayed so for a tenth of `ttl` more, is down: its attempts are abandoned and run elsewhere. "
        "Hosts beat three times per `ttl`; a host that has gone 0.8 `ttl` without a beat stored ends its workers "
        "itself."))
    local_workers: bool = Field(default=True, description=(
        "Run workers on this machine too (`max_workers` of them); off: only on hosts."))
    labels: list[str] = Field(default=[], description=(
        "Labels this machine's own slots offer (a task's `labels` must all be offered where it runs)."))

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: list[str]) -> list[str]:
        try:
            return validate_labels(labels)
        except HostError as exc:
            raise ValueError(str(exc)) from None


class HostsLink(NamedTuple):
    """Where the supervisor's side meets its hosts: the server's address and the login and CA files (absolute)."""

    url: str
    credentials: Path | None
    ca: Path | None


def hosts_link(config: Any, home: Path) -> HostsLink | None:
    """`[hosts]` of a swarm.toml (a `swarmd.config.Config`), its unset keys taken from the mail transport's when
    that is a NATS server; None when the swarm has no hosts. Relative files are taken from the home `home`."""
    hosts: HostsSettings = config.hosts
    nats = config.transport if config.transport != "files" else None
    url = hosts.url or nats
    if url is None:
        return None
    credentials = hosts.credentials or (config.transport_credentials if nats else None)
    ca = hosts.ca or (config.transport_ca if nats else None)
    return HostsLink(url, _under(home, credentials), _under(home, ca))


def _under(home: Path, value: str | None) -> Path | None:
    return None if value is None else home / Path(value).expanduser()

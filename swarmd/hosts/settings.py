"""`[hosts]` in swarm.toml: where this swarm's worker hosts join, and what this machine's own slots offer."""

from pydantic import BaseModel, ConfigDict, Field, field_validator

from swarmd.hosts.names import HostError, validate_labels


class HostsSettings(BaseModel):
    """`[hosts]`: worker hosts joined through NATS JetStream (`swarm host join`); unset `url`: no hosts."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, pattern=r"^(nats|tls)://[^\s/@]+$", description=(
        "The NATS server (with JetStream) the hosts join, `nats://host:port` or `tls://host:port`; TLS is "
        "required unless the address is loopback. Unset: workers run on this machine only."))
    credentials: str | None = Field(default=None, description=(
        "A file (mode 0600) with the supervisor's NATS login: a `.creds` file, an nkey seed, or TOML "
        "`user = \"...\"` and `password = \"...\"`. Relative to the home."))
    ca: str | None = Field(default=None, description=(
        "A PEM file of the certificate authorities that sign the server's TLS certificate (default: the system's)."))
    ttl: float = Field(default=15.0, ge=1, le=3600, description=(
        "Seconds a host's heartbeat key lives after its last beat; a host whose key has expired is down, and "
        "its attempts are abandoned and run elsewhere. Hosts beat three times per `ttl`."))
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

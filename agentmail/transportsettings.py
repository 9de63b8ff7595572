"""Which transport a home's mail takes, read from its swarm.toml with the standard library alone.

    transport = "nats://10.0.0.1:4222"            # default "files": the Maildir files under <home>/mail
    transport_credentials = "nats.creds"         # a 0600 file (relative to the home): see `Credentials`
    transport_ca = "ca.pem"                      # the CA that signed the server's certificate (TLS)

swarmd's `Config` model documents and validates the same keys; agentmail reads them itself (it sits below
swarmd and a worker's start-up path must not import the models). Credentials never come from a command line
or the URL: only from the file, which must not be readable by others. TLS is used whenever the address is not
loopback (or the scheme is `tls://`).
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

from agentmail.errors import TransportConfigError

FILES = "files"
URL_RE = re.compile(r"(nats|tls)://([A-Za-z0-9][A-Za-z0-9.-]{0,252}|\[[0-9A-Fa-f:.]+\]):(\d{1,5})")
URL_HELP = 'use "files" or "nats://HOST:PORT" (credentials go in transport_credentials, never in the URL)'
CREDS_JWT_MARK = "-----BEGIN NATS USER JWT-----"
MAX_CREDENTIALS = 64 << 10  # bytes


@dataclass(frozen=True)
class Credentials:
    """A login for the NATS server, from a file of one of three forms: a NATS `.creds` file (user JWT and
    nkey seed, as `nsc` writes it), an nkey seed alone (a line starting `SU`), or one line `user:password`."""

    path: Path
    user: str | None = None
    password: str | None = None
    nkey_seed: str | None = None
    creds_file: bool = False


@dataclass(frozen=True)
class TransportSettings:
    """The transport of one home: `url` (`nats://host:port`), TLS context when needed, credentials, and the
    `namespace` (the swarm's name) that keeps two swarms on one server apart."""

    url: str
    host: str
    namespace: str = "swarm"
    credentials: Credentials | None = None
    tls: ssl.SSLContext | None = None


def check_transport_url(url: str) -> str:
    """`url` if it is "files" or `nats://HOST:PORT` / `tls://HOST:PORT` with a port in 1-65535; else
    TransportConfigError naming what to write."""
    match = URL_RE.fullmatch(url) if isinstance(url, str) else None
    if url == FILES:
        return url
    if match is None or not 0 < int(match[3]) < 65536:
        raise TransportConfigError(f"transport {url!r} is not a transport address: {URL_HELP}")
    return url


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address, IPv6 in brackets) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_transport(home: Path) -> TransportSettings | None:
    """The JetStream settings of the home at `home`, or None for the file transport (no swarm.toml, or
    no `transport` in it, or "files"). Raises TransportConfigError for a bad address or credentials file;
    a swarm.toml that is not TOML is left to swarmd's config loader (None here)."""
    data = _toml(home / "swarm.toml")
    url = data.get("transport", FILES)
    if not isinstance(url, str):
        raise TransportConfigError(f"transport in {home / 'swarm.toml'} must be a string: {URL_HELP}")
    if check_transport_url(url) == FILES:
        return None
    match = URL_RE.fullmatch(url)
    assert match is not None  # checked above
    scheme, host = match[1], match[2]
    creds_name, ca_name = data.get("transport_credentials"), data.get("transport_ca")
    credentials = load_credentials(_beside(home, creds_name, "transport_credentials")) if creds_name else None
    tls = None
    if scheme == "tls" or not is_loopback(host) or ca_name:
        tls = _tls_context(_beside(home, ca_name, "transport_ca") if ca_name else None)
    namespace = data.get("name") if isinstance(data.get("name"), str) else "swarm"
    return TransportSettings(url=f"{scheme}://{host}:{match[3]}", host=host, namespace=_namespace(namespace),
                             credentials=credentials, tls=tls)


def load_credentials(path: Path) -> Credentials:
    """Read a credentials file after checking it is a regular file owned by this user and readable by
    nobody else (mode 0600 or stricter). TransportConfigError, one line, for anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise TransportConfigError(f"cannot read transport credentials {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise TransportConfigError(f"transport credentials {path} is not a regular file")
        if info.st_mode & 0o077 or info.st_uid != os.getuid():
            raise TransportConfigError(f"transport credentials {path} are readable by others (mode "
                                       f"{stat.S_IMODE(info.st_mode):04o}): run `chmod 600 {path}`")
        raw = handle.read(MAX_CREDENTIALS + 1)
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise TransportConfigError(f"transport credentials {path} are not UTF-8 text") from None
    if CREDS_JWT_MARK in text:
        return Credentials(path=path, creds_file=True)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if len(lines) == 1 and lines[0].startswith("SU"):
        return Credentials(path=path, nkey_seed=lines[0])
    if len(lines) == 1 and ":" in lines[0]:
        user, _, password = lines[0].partition(":")
        if user:
            return Credentials(path=path, user=user, password=password)
    raise TransportConfigError(f"transport credentials {path}: write one line `user:password`, an nkey seed "
                               "(SU...), or a NATS .creds file")


def _toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError):
        return {}


def _beside(home: Path, name: object, key: str) -> Path:
    if not isinstance(name, str) or not name:
        raise TransportConfigError(f"{key} in {home / 'swarm.toml'} must be a file name")
    path = Path(name).expanduser()
    return path if path.is_absolute() else home / path


def _tls_context(ca: Path | None) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=str(ca) if ca else None)
    except (OSError, ssl.SSLError) as exc:
        raise TransportConfigError(f"cannot use the transport CA {ca}: {exc}") from None


def _namespace(name: str) -> str:
    """The swarm's name as a NATS subject token and stream-name part (`[A-Za-z0-9_-]`)."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:32]
    return cleaned or "swarm"

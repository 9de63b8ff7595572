"""Per-agent secrets that prove who is calling a face (the MCP server) from inside the swarm.

At spawn the swarm makes a random token for the worker, puts it in the worker's environment
(`SWARM_AGENT_TOKEN`) and keeps only its SHA-256 in `<home>/run/tokens/<agent>` (0600). The token never goes
on a command line (any local user reads those): the worker's shell reads it from a one-shot file
(`handover_line`) that it removes at once. A caller that
names an agent must present the token whose hash is on file: reading the home (which every worker of the
same user can) gives the hash, never the token. The idea is the one of API keys stored hashed.
"""

import hashlib
import hmac
import os
import secrets
import shlex
from pathlib import Path

from protocol.names import validate_agent_name
from swarmd.errors import SwarmError
from swarmd.home import SwarmHome, make_private_dir

TOKEN_ENV = "SWARM_AGENT_TOKEN"


class BadToken(SwarmError):
    """A caller claims an agent without that agent's token."""


def _path(home: SwarmHome, agent: str) -> Path:
    return home.run_dir / "tokens" / validate_agent_name(agent)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(home: SwarmHome, agent: str) -> str:
    """A fresh token for `agent` (32 random bytes, hex); its hash replaces any earlier one on file."""
    path = _path(home, agent)
    make_private_dir(path.parent)
    token = secrets.token_hex(32)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(_digest(token))
    os.replace(tmp, path)
    return token


def handover_line(home: SwarmHome, agent: str, token: str) -> str:
    """A shell line that exports `token` as $SWARM_AGENT_TOKEN, read from a 0600 file it then removes."""
    path = _path(home, agent).with_name(f"{agent}.handover")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    os.replace(tmp, path)
    quoted = shlex.quote(str(path))
    return f'read -r {TOKEN_ENV} < {quoted}; rm -f {quoted}; export {TOKEN_ENV}'  # `read`: a built-in, no fork


def check_token(home: SwarmHome, agent: str, token: str | None) -> None:
    """Raise BadToken unless `token` is the one issued to `agent` (compared in constant time)."""
    try:
        with open(_path(home, agent), "rb", opener=lambda p, fl: os.open(p, fl | os.O_NOFOLLOW)) as f:
            expected = f.read().decode().strip()
    except OSError:
        expected = ""
    if not token or not expected or not hmac.compare_digest(expected, _digest(token)):
        raise BadToken(f"agent {agent}: missing or wrong ${TOKEN_ENV}; the swarm sets it when it starts a worker")

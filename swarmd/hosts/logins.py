"""Logins for the hosts' NATS server: one for the supervisor and one per worker host, each in a file of its own
(mode 0600, one line `user:password`, as `swarmd.hosts.link.read_credentials` reads it), and the server's
`authorization` block that gives each login its permissions (`swarmd.hosts.permissions`).

    written = write_logins(Path("nats-logins"), swarm="swarm", hosts=["a", "b"])
    # nats-logins/supervisor.login, host-a.login, host-b.login, and authorization.conf for nats-server to include

Passwords are 32 random URL-safe characters from the `secrets` module. The block holds them in the clear (it is
written 0600 too); nats-server compares them at each connection.
"""

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarmd.hosts.names import HostError, validate_host_name, validate_swarm_name
from swarmd.hosts.permissions import host_permissions, supervisor_permissions
from swarmd.hosts.wire import Layout

CONFIG_FILE = "authorization.conf"
SUPERVISOR_FILE = "supervisor.login"
PASSWORD_BYTES = 24  # 32 characters once encoded


@dataclass(frozen=True)
class Login:
    """One login: the NATS user name and the file (absolute) that holds `user:password`."""

    user: str
    file: Path


@dataclass(frozen=True)
class Logins:
    """What `write_logins` wrote: the server's `authorization` block (`config`), the supervisor's login and each
    host's (host name -> login)."""

    swarm: str
    config: Path
    supervisor: Login
    hosts: dict[str, Login]

    def as_dict(self) -> dict[str, Any]:
        def one(login: Login) -> dict[str, str]:
            return {"user": login.user, "file": str(login.file)}

        return {"swarm": self.swarm, "config": str(self.config), "supervisor": one(self.supervisor),
                "hosts": {name: one(login) for name, login in self.hosts.items()}}


def host_file(host: str) -> str:
    """The name of host `host`'s login file (HostError for a bad name)."""
    return f"host-{validate_host_name(host)}.login"


def write_logins(out: Path, *, swarm: str, hosts: list[str], force: bool = False) -> Logins:
    """Write a new login for the supervisor of swarm `swarm` and for each host in `hosts`, and the `authorization`
    block, into the directory `out` (made 0700 if missing). Raises HostError for a bad swarm or host name (before
    any path is built) and when a file to write exists already and not `force`; OSError when `out` is unusable."""
    layout = Layout(validate_swarm_name(swarm))
    names = sorted({validate_host_name(host) for host in hosts})
    if not names:
        raise HostError("name at least one host: --host NAME")
    out = Path(out).absolute()
    files = [out / CONFIG_FILE, out / SUPERVISOR_FILE, *(out / host_file(name) for name in names)]
    existing = [str(path) for path in files if path.exists() or path.is_symlink()]
    if existing and not force:
        raise HostError(f"{existing[0]} exists: pass --force to write new logins (the old ones stop working once "
                        "the server has the new block)")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    users = [(f"{swarm}.supervisor", supervisor_permissions(layout), out / SUPERVISOR_FILE)]
    users += [(f"{swarm}.host.{name}", host_permissions(layout, name), out / host_file(name)) for name in names]
    entries = []
    for user, permissions, path in users:
        password = secrets.token_urlsafe(PASSWORD_BYTES)
        _write_private(path, f"{user}:{password}\n")
        entries.append({"user": user, "password": password, "permissions": permissions})
    _write_private(out / CONFIG_FILE, authorization_block(swarm, entries))
    return Logins(swarm=swarm, config=out / CONFIG_FILE, supervisor=Login(users[0][0], users[0][2]),
                  hosts={name: Login(user, path) for name, (user, _, path) in zip(names, users[1:])})


def authorization_block(swarm: str, users: list[dict[str, Any]]) -> str:
    """nats-server's `authorization { users = [...] }` for `users` (each `{user, password, permissions}`), one user
    a line (NATS's config syntax takes JSON values)."""
    lines = [f"# NATS logins of swarm {swarm!r}, written by `swarm logins`. Put this file beside nats-server's config,",
             f"# add `include {CONFIG_FILE}` to that and reload the server. It holds passwords: keep it private.",
             "authorization {", "  users = ["]
    lines.append(",\n".join(f"    {json.dumps(user)}" for user in users))
    return "\n".join(lines + ["  ]", "}"]) + "\n"


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` (mode 0600) through a new file renamed over it: never through a planted link."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

"""Who may see the dashboard: one-time magic links that open a session, sessions held in a cookie, and the
CSRF token each session's actions must carry.

Secrets are 256-bit `secrets.token_urlsafe` strings. The home keeps only their SHA-256 (files 0600 under
`run/web/`, a 0700 directory), so a copy of the home opens no session. A link is spent by unlinking its
file: of two browsers racing with one link, exactly one gets a session. The magic-link login follows the
Vers coordination skill's dashboard (`POST /auth/magic-link`), made one-time and local.
"""

import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from swarmd.home import SwarmHome, make_private_dir

LINK_TTL = 15 * 60.0  # seconds a magic link may wait before it is used
SESSION_TTL = 12 * 3600.0  # seconds a session lasts
COOKIE = "swarm_session"
CSRF_HEADER = "x-csrf-token"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,128}")


@dataclass(frozen=True)
class Session:
    """A signed-in browser: who it acts as (the feed's agent for its actions), its CSRF token, and when it
    expires (epoch seconds)."""

    actor: str
    csrf: str
    expires: float

    def csrf_ok(self, token: str | None) -> bool:
        """Whether `token` is this session's CSRF token (compared in constant time)."""
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())


class Auth:
    """Magic links and sessions of one home, kept in `run/web/{links,sessions}/<sha256>.json`.

    Every process that opens the home sees the same ones: `swarm web --link` in one terminal mints a link
    that the server started in another accepts. `clock` gives epoch seconds (injected for tests)."""

    def __init__(self, home: SwarmHome, clock: Callable[[], float] = time.time) -> None:
        self.root = home.run_dir / "web"
        self.clock = clock
        for path in (self.root, self.root / "links", self.root / "sessions"):
            make_private_dir(path)

    def mint_link(self, actor: str) -> str:
        """A new one-time login token for `actor`, valid for LINK_TTL seconds (expired links and sessions are
        removed first)."""
        self._prune()
        token = secrets.token_urlsafe(32)
        _write_new(self._path("links", token), {"actor": actor, "expires": self.clock() + LINK_TTL})
        return token

    def redeem(self, token: str) -> tuple[str, Session] | None:
        """Spend a magic link: (a new session id, its session), or None if the token is unknown, spent or
        expired. The link is gone afterwards whatever the answer."""
        if not _TOKEN.fullmatch(token):
            return None
        path = self._path("links", token)
        data = _read(path)
        try:
            os.unlink(path)  # the commit point: one redeemer wins
        except FileNotFoundError:
            return None
        if data is None or data.get("expires", 0) < self.clock():
            return None
        session_id = secrets.token_urlsafe(32)
        session = Session(actor=str(data["actor"]), csrf=secrets.token_urlsafe(32),
                          expires=self.clock() + SESSION_TTL)
        _write_new(self._path("sessions", session_id), {"actor": session.actor, "csrf": session.csrf,
                                                        "expires": session.expires})
        return session_id, session

    def session(self, session_id: str | None) -> Session | None:
        """The live session a cookie names, or None (no cookie, unknown, or expired)."""
        if not session_id or not _TOKEN.fullmatch(session_id):
            return None
        data = _read(self._path("sessions", session_id))
        if data is None or data.get("expires", 0) < self.clock():
            return None
        return Session(actor=str(data["actor"]), csrf=str(data["csrf"]), expires=float(data["expires"]))

    def _prune(self) -> None:
        now = self.clock()
        for path in [*(self.root / "links").glob("*.json"), *(self.root / "sessions").glob("*.json")]:
            data = _read(path)
            if data is None or float(data.get("expires", 0)) < now:  # type: ignore[arg-type]
                path.unlink(missing_ok=True)

    def _path(self, kind: str, token: str) -> Path:
        return self.root / kind / f"{hashlib.sha256(token.encode()).hexdigest()}.json"


def _write_new(path: Path, data: dict[str, object]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)


def _read(path: Path) -> dict[str, object] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd) as f:
        try:
            data = json.load(f)
        except ValueError:
            return None
    return data if isinstance(data, dict) else None

"""Advisory file reservations: an agent says which paths (or globs) it means to edit, exclusively or shared,
for a while (a TTL). Nothing is locked: a reservation that overlaps another agent's is still granted, and the
conflict is reported to both (the requester in the answer, the holder on its reservation and by Agent Mail),
as the advisory model of MCP Agent Mail's file reservations (used by the agentops swarm skill's distributed
mode) has it. A worktree's pre-commit hook reads them to warn about, or refuse, a commit that touches another
agent's exclusive reservation.

The store is one JSON file in the swarm home (`reservations.json`), changed under an flock and replaced by
rename, so concurrent agents never lose each other's reservations.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, Field

from agentmail import PostOffice
from agentmail.errors import MailError
from protocol.messages import MessageType, make_message
from protocol.errors import InvalidName
from protocol.names import validate_agent_name
from swarmd.errors import SwarmError
from swarmd.home import SwarmHome

DEFAULT_TTL = 3600.0
MAX_TTL = 7 * 86_400.0
MAX_PATHS = 256


class ReservationError(SwarmError):
    """A reservation request that cannot be taken (a bad agent name, path or TTL)."""


class Reservation(BaseModel):
    """One agent's claim on a path or glob (`src/*.py`, `docs/`): times are Unix seconds."""

    agent: str
    path: str = Field(description="A path relative to the project, or a glob (`*`, `?`, `[...]`); `dir/` is all below.")
    exclusive: bool = True
    created: float
    expires: float
    conflicts: list[str] = Field(default=[], description="Agents whose overlapping reservations were reported.")


class Conflict(BaseModel):
    """A reservation of `holder` on `held` that overlaps the path `requested`; exclusive if either one is."""

    requested: str
    holder: str
    held: str
    exclusive: bool
    expires: float


class Reservations:
    """The reservations of one swarm home: `Reservations(home)` with `reserve`, `release`, `list`, `touching`.

    `home` is a SwarmHome or the home's directory; `clock` gives Unix seconds (injected for tests). Expired
    reservations are dropped whenever the store is written. Raises ReservationError for bad input.
    """

    def __init__(self, home: SwarmHome | str | os.PathLike[str], *, clock: Callable[[], float] = time.time) -> None:
        self.home = home if isinstance(home, SwarmHome) else SwarmHome(Path(home))
        self.path = self.home.root / "reservations.json"
        self.clock = clock

    def reserve(self, agent: str, paths: Iterable[str], *, exclusive: bool = True,
                ttl: float = DEFAULT_TTL) -> tuple[list[Reservation], list[Conflict]]:
        """Reserve `paths` for `agent` for `ttl` seconds: (the reservations granted, the conflicts found).

        Every path is granted; a conflict (an overlapping live reservation of another agent, either one
        exclusive) is returned and recorded on the holder's reservation, and the holder gets a STEER mail.
        Reserving a path the agent already holds renews it.
        """
        agent, wanted = _agent(agent), _paths(paths)
        if not 0 < ttl <= MAX_TTL:
            raise ReservationError(f"ttl must be between 0 and {MAX_TTL:g} seconds, not {ttl!r}")
        now = self.clock()
        with self._store() as held:
            conflicts = [Conflict(requested=p, holder=r.agent, held=r.path, exclusive=r.exclusive, expires=r.expires)
                         for p in wanted for r in held
                         if r.agent != agent and (exclusive or r.exclusive) and overlaps(p, r.path)]
            for r in held:
                if any(c.holder == r.agent and c.held == r.path for c in conflicts) and agent not in r.conflicts:
                    r.conflicts.append(agent)
            held[:] = [r for r in held if not (r.agent == agent and r.path in wanted)]
            granted = [Reservation(agent=agent, path=p, exclusive=exclusive, created=now, expires=now + ttl,
                                   conflicts=sorted({c.holder for c in conflicts if c.requested == p}))
                       for p in wanted]
            held.extend(granted)
        self._tell_holders(agent, conflicts)
        return granted, conflicts

    def release(self, agent: str, paths: Iterable[str] | None = None) -> int:
        """Release `agent`'s reservations of `paths` (all of them when None): how many were released."""
        agent = _agent(agent)
        chosen = None if paths is None else set(_paths(paths))
        with self._store() as held:
            before = len(held)
            held[:] = [r for r in held if not (r.agent == agent and (chosen is None or r.path in chosen))]
            return before - len(held)

    def list(self, agent: str | None = None) -> list[Reservation]:
        """The live reservations (of `agent` only, when given), oldest first."""
        if agent is not None:
            agent = _agent(agent)
        now = self.clock()
        return [r for r in self._read() if r.expires > now and (agent is None or r.agent == agent)]

    def touching(self, agent: str, files: Iterable[str]) -> list[Conflict]:
        """Other agents' live exclusive reservations that cover any of `files` (paths a commit changes)."""
        held = [r for r in self.list() if r.agent != agent and r.exclusive]
        return [Conflict(requested=f, holder=r.agent, held=r.path, exclusive=True, expires=r.expires)
                for f in files for r in held if overlaps(f, r.path)]

    # ----- the store --------------------------------------------------------------------------------------
    def _read(self) -> list[Reservation]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise ReservationError(f"{self.path}: cannot read the reservations: {exc}") from None
        return [Reservation.model_validate(item) for item in data.get("reservations", [])]

    @contextmanager
    def _store(self) -> Iterator[list[Reservation]]:
        """The live reservations, under the store's lock; written back (by rename) when the block ends."""
        if not self.home.root.is_dir():
            raise ReservationError(f"no swarm home at {self.home.root}: run `swarm init`")
        fd = os.open(self.home.root / ".reservations.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            now = self.clock()
            held = [r for r in self._read() if r.expires > now]
            yield held
            tmp = self.path.with_suffix(".tmp")
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(out, "w") as f:
                json.dump({"reservations": [r.model_dump() for r in held]}, f, indent=1)
            os.replace(tmp, self.path)
        finally:
            os.close(fd)

    def _tell_holders(self, agent: str, conflicts: list[Conflict]) -> None:
        """Each holder with a mailbox here hears of the overlap once per request (advisory: never fatal)."""
        if not conflicts:
            return
        post = PostOffice(self.home.root, durable=False)
        mailboxes = set(post.agents())
        for holder in sorted({c.holder for c in conflicts}):
            held = ", ".join(sorted({f"{c.held} (wanted: {c.requested})" for c in conflicts if c.holder == holder}))
            with suppress(MailError, OSError, ValueError):
                if holder in mailboxes:
                    post.send(make_message(MessageType.STEER, agent, holder, {
                        "text": f"reservation conflict: {agent} reserved paths overlapping yours: {held}"}))


def overlaps(a: str, b: str) -> bool:
    """Whether two reserved paths or globs can name a common file: equal, one a glob matching the other, or
    one a directory (`dir` or `dir/`) holding the other."""
    a, b = a.rstrip("/"), b.rstrip("/")
    if a == b or fnmatchcase(a, b) or fnmatchcase(b, a):
        return True
    pa, pb = PurePosixPath(a), PurePosixPath(b)
    return pa in pb.parents or pb in pa.parents or any(fnmatchcase(str(p), b) for p in pa.parents) \
        or any(fnmatchcase(str(p), a) for p in pb.parents)


def _agent(name: str) -> str:
    try:
        return validate_agent_name(name)
    except InvalidName as exc:
        raise ReservationError(str(exc)) from None


def _paths(paths: Iterable[str]) -> list[str]:
    """Relative, normalised, without `..`; at least one and at most MAX_PATHS. (A str alone is one path.)"""
    items = [paths] if isinstance(paths, str) else list(paths)
    if not items or len(items) > MAX_PATHS:
        raise ReservationError(f"give between 1 and {MAX_PATHS} paths to reserve or release")
    clean = []
    for raw in items:
        path = str(raw).strip()
        parts = PurePosixPath(path).parts
        if not path or path.startswith("/") or ".." in parts or "\0" in path or len(path) > 1024:
            raise ReservationError(f"reserve paths relative to the project, without '..': not {raw!r}")
        normal = str(PurePosixPath(path)) + ("/" if path.endswith("/") and path != "/" else "")
        if normal not in clean:
            clean.append(normal)
    return clean

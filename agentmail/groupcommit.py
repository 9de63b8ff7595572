"""Group commit for durable delivery: senders to one mailbox share the flushes that make their mail durable.

A durable delivery needs two things on disk before it returns: the message's bytes (before the rename makes
them visible) and the rename into `new/`. Done alone, each costs an fsync. Here a sender that has finished
one of those steps takes a ticket (a counter, under the mailbox lock) and queues on `.sync.lock`; the sender
at the head reads the highest ticket taken so far, flushes the whole file system once with syncfs(2) and
records that number as synced (a sender alone in its group flushes only its own work, which costs less).
Every sender behind it whose ticket is covered returns without a flush of
its own: while one flush runs the next group gathers. This is the group commit of database logs (a log
flush serves every transaction that committed before it began; Gray and Reuter, *Transaction Processing*,
ch. 9) and of ext4's journal, which batches the fsyncs of concurrent callers into one journal commit.

The counters live in `.group` with the kernel's boot id: they are hints that only ever say less than is on
disk, and after a reboot (a power loss forgets unflushed writes, the counters' included) numbers written in
an earlier boot count for nothing. Where syncfs or a boot id cannot be had, each sender flushes its own work
(the `fallback` it passes), as before.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import cache
from typing import NamedTuple

BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
_FIELD = 20  # digits of each counter in `.group`


class GroupState(NamedTuple):
    """What `.group` holds: the boot it was written in, tickets taken, the highest ticket flushed, and how many
    flushes were done (for benchmarks and tests)."""

    boot: str
    tickets: int
    synced: int
    flushes: int

    def encode(self) -> bytes:
        return f"{self.boot} {self.tickets:0{_FIELD}d} {self.synced:0{_FIELD}d} {self.flushes:0{_FIELD}d}\n".encode()


class GroupCommit:
    """The flushes of one mailbox directory `path`, shared by every process that delivers into it.

    `locked` is the mailbox lock (a context manager); `take` must be called under it, `wait` never.
    Raises OSError when a flush fails (the caller's delivery then fails)."""

    def __init__(self, path: str, locked: Callable[[], AbstractContextManager[None]]) -> None:
        self._dir, self._locked = path, locked
        self._state_file, self._sync_lock_file = f"{path}/.group", f"{path}/.sync.lock"

    def take(self) -> int:
        """A ticket for work just finished (a written file, a rename); the caller holds the mailbox lock."""
        state = self.state()
        self._store(state._replace(tickets=state.tickets + 1))
        return state.tickets + 1

    def wait(self, ticket: int, fallback: Callable[[], None]) -> None:
        """Return once the work of `ticket` (and all before it) is durable: flushed by another sender's syncfs
        that began after it, or by one this sender runs for the whole group. Without syncfs, `fallback()`
        flushes this sender's own work."""
        syncfs, boot = _syncfs(), boot_id()
        if syncfs is None or not boot:
            fallback()
            return
        fd = os.open(self._sync_lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # queued by the kernel: the next group gathers while a flush runs
            with self._locked():
                target = self.state()
            if target.synced >= ticket:
                return  # a flush that began after our work was done covers it
            if target.tickets - target.synced <= 1:
                fallback()  # alone in the group: flushing one's own work costs less than the whole file system
            else:
                syncfs(fd)
            with self._locked():
                state = self.state()
                self._store(state._replace(synced=max(state.synced, target.tickets), flushes=state.flushes + 1))
        finally:
            os.close(fd)  # releases the flock

    def state(self) -> GroupState:
        """The counters as this boot knows them (all 0 when none were written in this boot)."""
        try:
            fd = os.open(self._state_file, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return GroupState(boot_id(), 0, 0, 0)
        try:
            fields = os.pread(fd, 128, 0).split()
        finally:
            os.close(fd)
        if len(fields) != 4 or fields[0].decode(errors="replace") != boot_id() or not all(
                f.isdigit() for f in fields[1:]):
            return GroupState(boot_id(), 0, 0, 0)
        return GroupState(boot_id(), *(int(f) for f in fields[1:]))

    def _store(self, state: GroupState) -> None:
        fd = os.open(self._state_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.pwrite(fd, state.encode(), 0)
        finally:
            os.close(fd)


@cache
def boot_id() -> str:
    """The kernel's id of this boot (Linux), "" where there is none."""
    try:
        with open(BOOT_ID_FILE) as f:
            return f.read().strip()
    except OSError:
        return ""


@cache
def _syncfs() -> Callable[[int], None] | None:
    """syncfs(2) from the C library, raising OSError on failure; None where the C library has none."""
    import ctypes  # only a durable sender pays for it

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.syncfs
    except (OSError, AttributeError):
        return None
    call.argtypes, call.restype = [ctypes.c_int], ctypes.c_int

    def syncfs(fd: int) -> None:
        if call(fd) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))
    return syncfs

"""Delivery into a Maildir-style mailbox with the standard library alone: the bytes, not the model.

A message is written whole to `tmp/`, fsynced (when durable), given the mailbox's next sequence number
under its lock, and renamed into `new/<seq>-<id>.json`; the rename is the commit point (CPython's
`mailbox.Maildir` delivers the same way). `Mailbox` delivers through this module, and so does a worker's
start-up path, which must not pay for importing the models: both follow the same rules on the same files.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from protocol import faults

from agentmail.errors import MailboxError, UnsafePath
from agentmail.groupcommit import GroupCommit

SUBDIRS = ("tmp", "new", "cur", "bad")
SEQ_WIDTH = 12
FILE_NAME_RE = re.compile(r"(\d{%d})-([0-9A-Za-z_-]{1,64})\.json" % SEQ_WIDTH)
WRITE_FLAGS = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a planted FIFO must not hang us
_tmp_counter = itertools.count()


def check_real_dir(path: Path | str) -> None:
    """Raise UnsafePath unless `path` is a directory and not a symlink."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise MailboxError(f"mailbox directory {path} is missing: register the agent again") from None
    if stat.S_ISLNK(mode):
        raise UnsafePath(f"refusing symlinked mailbox path {path}: replace it with a real directory")
    if not stat.S_ISDIR(mode):
        raise UnsafePath(f"mailbox path {path} is not a directory: move it away and register the agent again")


def make_mailbox_dirs(path: Path) -> None:
    """Create the mailbox directory and its sub-directories (0700), leaving existing ones alone."""
    for directory in (path, *(path / sub for sub in SUBDIRS)):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass
        check_real_dir(directory)


class Delivery:
    """Delivers serialized messages into the mailbox directory `path` (its sub-directories must exist).

    Cheap to keep and safe to share between threads; `durable` makes each message and its rename into `new/`
    durable before `deliver` returns.
    Raises OSError on a file system refusal, leaving tmp/ clean: callers phrase it for their users.
    """

    def __init__(self, path: str, *, durable: bool = True) -> None:
        self.durable = durable
        # Plain strings: pathlib costs more than the syscalls it names on the send path.
        self._tmp_prefix, self._new_prefix = f"{path}/tmp/", f"{path}/new/"
        self._scanned = tuple(f"{path}/{sub}" for sub in ("new", "cur", "bad"))
        self._lock_file, self._seq_file = f"{path}/.lock", f"{path}/.seq"
        self._group = GroupCommit(path, self.locked)
        self._reconciled = False

    def deliver(self, payload: bytes, message_id: str) -> str:
        """Write `payload` (a whole, validated message whose id is `message_id`) into `new/`; return its name.

        When durable it returns only once both the message's bytes and its rename into `new/` are on disk;
        concurrent senders share the flushes (`GroupCommit`)."""
        tmp = f"{self._tmp_prefix}{message_id}.{os.getpid()}.{next(_tmp_counter)}"
        self._write_tmp(tmp, payload)
        try:
            with self.locked():
                seq = self._next_seq()
                name = f"{seq:0{SEQ_WIDTH}d}-{message_id}.json"
                faults.crash_point("mail.seq_taken")
                os.rename(tmp, self._new_prefix + name)
                ticket = self._group.take() if self.durable else 0
        except BaseException:
            unlink_quietly(tmp)
            raise
        faults.crash_point("mail.renamed")
        if self.durable:
            self._group.wait(ticket, lambda: fsync_dir(self._new_prefix))
        return name

    def _write_tmp(self, tmp: str, payload: bytes) -> None:
        fd = os.open(tmp, WRITE_FLAGS, 0o600)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view):]
            faults.crash_point("mail.tmp_written")
            if self.durable:  # the bytes are on disk before the rename makes them visible (Maildir's rule)
                with self.locked():
                    ticket = self._group.take()
                self._group.wait(ticket, lambda: os.fsync(fd))
            faults.crash_point("mail.tmp_synced")
        except BaseException:
            os.close(fd)
            unlink_quietly(tmp)
            raise
        os.close(fd)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the mailbox's `.lock` (a blocking flock, queued by the kernel: no polling).

        The lock file is opened per acquisition, so threads of one process exclude each other too. It is the
        same whole-file flock that `filelock.FileLock` takes, so both contend correctly on `.lock`.
        """
        fd = os.open(self._lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the only descriptor releases the flock

    def _next_seq(self) -> int:
        """Take the next sequence number (caller holds the lock) and store it before the rename.

        Storing first means a crash between the two leaves a gap, never a duplicate. After a power loss the
        stored value may be older than the names on disk, so the first use in a process also looks at them.
        """
        fd = os.open(self._seq_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            raw = os.pread(fd, 32, 0).strip()
            last = int(raw) if raw.isdigit() else None
            if last is None or not self._reconciled:
                last = max(last or 0, self._highest_seq_on_disk())
                self._reconciled = True
            os.pwrite(fd, b"%020d\n" % (last + 1), 0)
        finally:
            os.close(fd)
        return last + 1

    def _highest_seq_on_disk(self) -> int:
        highest = 0
        for directory in self._scanned:
            for name in os.listdir(directory):
                if name[:SEQ_WIDTH].isdigit():
                    highest = max(highest, int(name[:SEQ_WIDTH]))
        return highest


def fsync_dir(directory: str) -> None:
    """fsync a directory, making the renames into it durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quietly(path: str) -> None:
    """Remove `path` if it is there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

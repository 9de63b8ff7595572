"""Resource faults with real file systems: a full disk (a small tmpfs this test mounts), a read-only home
(the tmpfs remounted read-only: we run as root, and root ignores permission bits), and scale (20,000
messages in one mailbox, a role broadcast to 500 mailboxes). Skipped where mounting is not allowed.
"""

from __future__ import annotations

import errno
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentmail import MailError, PostOffice
from protocol import MessageType, make_message
from protocol.event import EventType
from swarmd.errors import LedgerError
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger

import crashproc
from conftest import run_cli

FS_SIZE = "2m"


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for this test alone, unmounted after."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE},mode=0700", "tmpfs", str(mount_point)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): needs CAP_SYS_ADMIN")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(fs: Path) -> Path:
    """Fill the file system to the last byte; return the filler file (delete it to free the space)."""
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 1 << 9, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def remount_read_only(fs: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)


def assert_one_line_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert all(w in done.stderr for w in words), done.stderr


def steer(text: str) -> object:
    return make_message(MessageType.STEER, "boss", "inbox", {"text": text})


# -- a full disk ---------------------------------------------------------------------------------------


def test_send_on_a_full_disk_fails_cleanly_and_recovers(small_fs: Path) -> None:
    po = PostOffice(small_fs / "home")
    mailbox = po.register("inbox")
    first = mailbox.list() or [po.send(steer("before"))]
    filler = fill(small_fs)
    with pytest.raises(MailError, match="No space left on device") as refused:
        po.send(steer("x" * 9000))
    assert "\n" not in str(refused.value)
    box = small_fs / "home" / "mail" / "inbox"
    assert os.listdir(box / "tmp") == [] and len(os.listdir(box / "new")) == len(first)
    assert mailbox.bad() == []
    filler.unlink()
    after = po.send(steer("after"))
    unread = mailbox.list()
    assert [d.message.id for d in unread][-1] == after.id and unread[-1].seq > unread[0].seq


def test_append_on_a_full_disk_leaves_no_torn_line_and_recovers(small_fs: Path) -> None:
    ledger = Ledger(SwarmHome(small_fs / "home"))
    ledger.append(EventType.PROGRESS, "w1", summary="before")
    filler = fill(small_fs)
    with pytest.raises(LedgerError, match="nothing was appended") as refused:
        ledger.append(EventType.PROGRESS, "w1", summary="big", filler="y" * 20_000)  # crosses pages: short write
    assert "\n" not in str(refused.value)
    assert ledger.path.read_bytes().endswith(b"\n"), "a torn line was left in the log"
    assert [e.summary for e in ledger.events()] == ["before"] and ledger.last_seq() == 1
    filler.unlink()
    assert ledger.append(EventType.PROGRESS, "w1", summary="after").seq == 2
    assert [e.seq for e in Ledger(SwarmHome(small_fs / "home")).events()] == [1, 2]


def test_clis_on_a_full_disk_exit_2_with_one_line(small_fs: Path) -> None:
    home = str(small_fs / "home")
    assert run_cli("swarm", "init", "--home", home).returncode == 0
    assert run_cli("agentmail", "register", "inbox", "--home", home).returncode == 0
    filler = fill(small_fs)
    send = ("agentmail", "send", "--home", home, "--from", "boss", "--to", "inbox", "--type", "steer",
            "--field", "text=hello")
    assert_one_line_error(run_cli(*send), "No space left on device")
    publish = ("swarm", "feed", "publish", "--home", home, "--agent", "w1", "--type", "progress", "x" * 9000)
    assert_one_line_error(run_cli(*publish), "No space left on device")
    filler.unlink()
    assert run_cli(*send).returncode == 0
    assert run_cli(*publish).stdout.strip() == "1"


# -- a read-only home ----------------------------------------------------------------------------------


def test_read_only_home_is_refused_at_start(small_fs: Path) -> None:
    home = str(small_fs / "home")
    assert run_cli("swarm", "init", "--home", home).returncode == 0
    assert run_cli("agentmail", "register", "inbox", "--home", home).returncode == 0
    remount_read_only(small_fs)
    assert_one_line_error(run_cli("swarm", "init", "--home", home), "not writable")
    assert_one_line_error(run_cli("swarm", "up", "--home", home), "not writable")
    assert_one_line_error(run_cli("agentmail", "send", "--home", home, "--from", "boss", "--to", "inbox",
                                  "--type", "steer", "--field", "text=hi"), "Read-only file system")
    assert_one_line_error(run_cli("swarm", "init", "--home", str(small_fs / "new")), "Read-only file system")


# -- scale -----------------------------------------------------------------------------------------------


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    with crashproc.scratch_dir(tmp_path) as path:
        yield path


def timed(action: object) -> tuple[object, float]:
    """The result and the CPU seconds it took (wall time on a shared CI box measures the neighbours)."""
    start, wall = time.process_time(), time.perf_counter()
    result = action()  # type: ignore[operator]
    cpu = time.process_time() - start
    print(f"\n  {getattr(action, '__name__', 'action')}: {cpu * 1000:.1f} ms CPU, "
          f"{(time.perf_counter() - wall) * 1000:.1f} ms wall", end="")
    return result, cpu


def test_twenty_thousand_messages_in_one_mailbox(scratch: Path) -> None:
    count = 20_000
    po = PostOffice(scratch / "home", durable=False)
    mailbox = po.register("inbox")
    for i in range(count):
        po.send(steer(str(i)))
    unread, list_s = timed(mailbox.list)
    assert [d.message.body.text for d in unread] == [str(i) for i in range(count)]  # type: ignore[union-attr]
    oldest, claim_s = timed(mailbox.claim)
    assert oldest is not None and oldest.message.body.text == "0"  # type: ignore[union-attr]
    by_id, claim_id_s = timed(lambda: mailbox.claim(unread[-1].message.id))
    assert by_id is not None and by_id.message.id == unread[-1].message.id  # type: ignore[union-attr]
    stop, seen = threading.Event(), []
    start = time.perf_counter()
    for delivered in mailbox.watch(stop=stop, timeout=60):
        seen.append(delivered.seq)
        if len(seen) == count - 2:
            stop.set()
    watch_s = time.perf_counter() - start
    assert len(seen) == count - 2 and seen == sorted(seen)
    print(f"\n20k mailbox (CPU): list {list_s:.2f} s, claim oldest {claim_s * 1000:.1f} ms, "
          f"claim by id {claim_id_s * 1000:.1f} ms, watch all {watch_s:.2f} s")


def test_role_broadcast_to_five_hundred_mailboxes(scratch: Path) -> None:
    po = PostOffice(scratch / "home", durable=False)
    names = [f"w{i:03d}" for i in range(500)]
    for name in names:
        po.register(name, role="worker")
    message = make_message(MessageType.STEER, "boss", ["role:worker"], {"text": "all hands"})
    _, send_s = timed(lambda: po.send(message))
    for name in names:
        assert [d.message.id for d in po.mailbox(name).list()] == [message.id]
    print(f"\nbroadcast to 500 mailboxes: {send_s * 1000:.0f} ms")

"""Many real processes against one mailbox: ordering, exactly-once claims, and crash safety."""

import fcntl
import multiprocessing as mp
import os
import signal
from contextlib import nullcontext
from pathlib import Path

import pytest

from agentmail import PostOffice
from agentmail.groupcommit import GroupCommit
from protocol import MessageType, make_message

import mailproc
from swarmkit import wait_until
from mailproc import INBOX

CTX = mp.get_context("fork")


def _run_all(processes: list[mp.process.BaseProcess], timeout: float = 120) -> None:
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout)
        assert p.exitcode == 0, f"{p.name} exited with {p.exitcode}"


def _check_delivery(home: Path, senders: int, count: int) -> None:
    unread = PostOffice(home).mailbox(INBOX).list()
    seqs = [d.seq for d in unread]
    assert all(a < b for a, b in zip(seqs, seqs[1:])), "sequence numbers must strictly increase"
    assert len({d.message.id for d in unread}) == len(unread) == senders * count
    by_sender: dict[str, list[int]] = {}
    for d in unread:
        by_sender.setdefault(d.message.sender, []).append(int(d.message.body.step))
    assert sorted(by_sender) == [f"s{i}" for i in range(senders)]
    for sender, steps in by_sender.items():
        assert steps == list(range(count)), f"{sender}'s messages out of order or missing"
    assert os.listdir(home / "mail" / INBOX / "tmp") == []
    assert PostOffice(home).mailbox(INBOX).bad() == []


@pytest.mark.parametrize(("senders", "count", "durable"), [(8, 2000, False), (4, 150, True)])
def test_concurrent_senders_keep_order_and_lose_nothing(home_dir: Path, senders: int, count: int,
                                                        durable: bool) -> None:
    PostOffice(home_dir).register(INBOX)
    _run_all([CTX.Process(target=mailproc.send_many, args=(str(home_dir), f"s{i}", count, durable))
              for i in range(senders)])
    _check_delivery(home_dir, senders, count)
    if durable:  # group commit: the flushes recorded cover both steps (bytes, rename) of every delivery
        state = GroupCommit(str(home_dir / "mail" / INBOX), nullcontext).state()
        assert state.synced == state.tickets == 2 * senders * count
        assert 0 < state.flushes <= state.tickets


def test_senders_queued_behind_a_flush_share_the_next_one(home_dir: Path) -> None:
    """While one flush runs (here: the test holds `.sync.lock`), every sender that finished writing waits; the
    next flush covers them all, so four messages take fewer flushes than their eight durable steps."""
    PostOffice(home_dir).register(INBOX)
    mailbox = home_dir / "mail" / INBOX
    group = GroupCommit(str(mailbox), nullcontext)
    spawn = mp.get_context("spawn")  # a forked child would inherit the lock below, and wait on itself
    senders = [spawn.Process(target=mailproc.send_many, args=(str(home_dir), f"s{i}", 1, True)) for i in range(4)]
    fd = os.open(mailbox / ".sync.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for p in senders:
            p.start()
        wait_until(lambda: group.state().tickets == 4, 60, "four senders queued with their bytes written")
        assert os.listdir(mailbox / "new") == [], "nothing is visible before its bytes are durable"
    finally:
        os.close(fd)
    for p in senders:
        p.join(60)
        assert p.exitcode == 0
    state = group.state()
    assert len(os.listdir(mailbox / "new")) == 4
    assert state.synced == state.tickets == 8
    assert state.flushes <= 5, "the four queued senders' bytes were flushed together, once"


def test_racing_claimers_each_get_a_message_exactly_once(home_dir: Path, tmp_path: Path) -> None:
    po = PostOffice(home_dir, durable=False)
    po.register(INBOX)
    sent = {po.send(make_message(MessageType.STEER, "boss", INBOX, {"text": str(i)})).id for i in range(1500)}
    outs = [tmp_path / f"claimed-{i}" for i in range(3)]
    _run_all([CTX.Process(target=mailproc.claim_all, args=(str(home_dir), str(out))) for out in outs])
    claimed = [line for out in outs for line in out.read_text().split()]
    assert len(claimed) == len(set(claimed)), "a message was claimed twice"
    assert set(claimed) == sent
    assert sum(1 for out in outs if out.read_text()) >= 2, "the claimers did not race at all"
    assert po.mailbox(INBOX).list() == []


def test_sender_killed_mid_send_leaves_only_whole_messages(home_dir: Path) -> None:
    po = PostOffice(home_dir)
    mailbox = po.register(INBOX)
    sender = CTX.Process(target=mailproc.send_forever, args=(str(home_dir), "victim"))
    sender.start()
    arrived = 0
    for _ in mailbox.watch(timeout=30):
        arrived += 1
        if arrived == 200:
            break
    os.kill(sender.pid, signal.SIGKILL)  # type: ignore[arg-type]
    sender.join(10)
    assert arrived == 200 and sender.exitcode == -signal.SIGKILL
    unread = mailbox.list()
    assert mailbox.bad() == [], "a partial or broken message reached new/"
    assert [int(d.message.body.step) for d in unread] == list(range(len(unread)))
    # The lock died with the sender: delivery goes on, after the last sequence number.
    after = po.send(make_message(MessageType.STEER, "boss", INBOX, {"text": "still there?"}))
    last = mailbox.list()[-1]
    assert last.message.id == after.id and last.seq > unread[-1].seq

"""Senders killed (SIGKILL) at each step of a delivery, and at random moments: nothing accepted is lost,
nothing is delivered twice, nothing half-written is ever visible, and delivery goes on after each kill.

A kill may legitimately leave a file in tmp/ (never visible), a gap in the sequence, or a message that
was delivered but never reported accepted (at-least-visible); never a duplicate or a broken file in new/.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agentmail import PostOffice
from protocol import MessageType, make_message

import crashproc
from crashproc import INBOX

MAIL_POINTS = ("mail.tmp_written", "mail.tmp_synced", "mail.seq_taken", "mail.renamed")
KILLS_PER_POINT = 100
RANDOM_KILLS = 500
LARGEST_BODY = 12_000  # bodies up to three pages: a kill can land inside a multi-page write


@dataclass
class MailWitness:
    """The reader's view across kills: every name seen in new/, the ids, and the last sequence number."""

    home: Path
    seen: set[str] = field(default_factory=set)
    ids: set[str] = field(default_factory=set)
    last_seq: int = 0
    counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.po = PostOffice(self.home, durable=True)
        self.mailbox = self.po.register(INBOX)
        self.dir = self.home / "mail" / INBOX

    def check(self, accepted: list[str]) -> list[str]:
        """Check the mailbox after a kill; return the ids that became visible since the last check."""
        arrived = self.mailbox.scan(self.seen)  # parses every new file; a broken one would go to bad/
        assert os.listdir(self.dir / "bad") == [], "a half-written or unparseable file was visible in new/"
        for delivered in arrived:
            assert delivered.seq > self.last_seq, f"seq {delivered.seq} after {self.last_seq}: not increasing"
            assert delivered.message.id not in self.ids, f"message {delivered.message.id} delivered twice"
            self.last_seq = delivered.seq
            self.ids.add(delivered.message.id)
        lost = set(accepted) - self.ids
        assert not lost, f"accepted but not delivered: {sorted(lost)}"
        assert crashproc.lock_is_free(self.dir / ".lock"), "the dead sender's lock is still held"
        return [d.message.id for d in arrived]

    def send_after(self) -> int:
        """Deliver one message from the reader's side; return the seq it got (delivery must go on)."""
        sent = self.po.send(make_message(MessageType.STEER, "boss", INBOX, {"text": "still there?"}))
        before = self.last_seq
        assert self.check([sent.id]) == [sent.id]
        return self.last_seq - before

    def tmp_files(self) -> int:
        return len(os.listdir(self.dir / "tmp"))


@pytest.fixture
def witness(tmp_path: Path) -> Iterator[MailWitness]:
    with crashproc.scratch_dir(tmp_path) as scratch:
        yield MailWitness(scratch / "home")


def crash_at_points(witness: MailWitness, kills_per_point: int, seed: int) -> Counter[str]:
    rng = random.Random(seed)
    for point in MAIL_POINTS:
        for _ in range(kills_per_point):
            kill_at_point(witness, point, rng)
    return witness.counts


def kill_at_point(witness: MailWitness, point: str, rng: random.Random) -> None:
    """Crash one sender at the n-th pass through `point`; check exactly what that step may leave."""
    nth = rng.randint(1, 4)
    tmp_before = witness.tmp_files()
    body = crashproc.sender(witness.home, nth + 5, LARGEST_BODY, rng.getrandbits(32))
    status, accepted = crashproc.reap(*crashproc.fork_child(body, f"{point}:{nth}"))
    assert crashproc.killed(status), f"the sender was not killed at {point}:{nth} (status {status})"
    assert len(accepted) == nth - 1
    arrived = witness.check(accepted)
    visible_not_accepted = len(arrived) - len(accepted)
    assert visible_not_accepted == (1 if point == "mail.renamed" else 0), point
    assert witness.tmp_files() - tmp_before == (0 if point == "mail.renamed" else 1), point
    gap = witness.send_after()
    assert gap == (2 if point == "mail.seq_taken" else 1), f"{point}: next seq jumped by {gap}"
    witness.counts[point] += 1


def crash_at_random(witness: MailWitness, kills: int, seed: int) -> Counter[str]:
    """Kill senders after a random number of sends plus a random delay (a few sends long)."""
    rng = random.Random(seed)
    for _ in range(kills):
        tmp_before = witness.tmp_files()
        pid, reports = crashproc.fork_child(crashproc.sender(witness.home, 10_000, LARGEST_BODY, rng.getrandbits(32)))
        status, accepted = crashproc.kill_after(pid, reports, rng.randint(0, 3), rng.uniform(0, 0.002))
        assert crashproc.killed(status), f"the sender ended before the kill (status {status})"
        arrived = witness.check(accepted)
        witness.counts["random"] += 1
        witness.counts["random: delivered, not reported"] += len(arrived) - len(accepted)
        witness.counts["random: left a tmp file"] += witness.tmp_files() - tmp_before
        witness.send_after()
    return witness.counts


def test_sender_killed_at_each_delivery_step(witness: MailWitness) -> None:
    counts = crash_at_points(witness, KILLS_PER_POINT, seed=1)
    print(f"\nmail kills per crash point: {dict(counts)}")
    assert all(counts[p] == KILLS_PER_POINT for p in MAIL_POINTS)


def test_sender_killed_at_random_moments(witness: MailWitness) -> None:
    counts = crash_at_random(witness, RANDOM_KILLS, seed=2)
    print(f"\nmail random kills: {dict(counts)}")
    assert counts["random"] == RANDOM_KILLS
    assert counts["random: delivered, not reported"] + counts["random: left a tmp file"] > 0, \
        "no kill landed inside a send: the delays do not cover the send path"


@pytest.mark.soak
def test_soak_sender_kills(witness: MailWitness) -> None:
    crash_at_points(witness, 2_000, seed=3)
    counts = crash_at_random(witness, 20_000, seed=4)
    print(f"\nmail soak kills: {dict(counts)}")

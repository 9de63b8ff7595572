"""Appenders killed (SIGKILL) before the write, in the middle of it (a torn line), after it but before the
fsync, and at random moments: readers skip a torn last line, the next append repairs it and continues the
seq strictly, and every event an appender was told was appended is there exactly once.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from protocol.event import EventType
from protocol.task import Task, TaskStatus
from swarmd.ledger import feed
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.supervisor.loop import Supervisor
from swarmkit import init_home

import crashproc

LEDGER_POINTS = ("ledger.before_write", "ledger.torn_write", "ledger.written")
KILLS_PER_POINT = 100
RANDOM_KILLS = 800
LARGEST_FILLER = 12_000  # events up to three pages: the kernel may cut a write that a kill interrupts


@dataclass
class LedgerWitness:
    """The reader's view across kills: the verified prefix of the log, its last seq, and every summary."""

    home: Path
    verified: int = 0  # bytes of the log checked so far (a line boundary)
    last_seq: int = 0
    summaries: set[str] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.ledger = Ledger(SwarmHome(self.home), durable=True)
        self.path = self.ledger.path

    def check(self, accepted: list[str]) -> bool:
        """Check the log after a kill; return whether it ends in a torn line (which readers must skip)."""
        data = _read_from(self.path, self.verified)
        complete, _, torn = data.rpartition(b"\n")
        for line in complete.split(b"\n") if complete else []:
            event = feed.parse_event(line)
            assert event is not None, f"an unreadable line before the end of the log: {line[:80]!r}"
            assert event.seq == self.last_seq + 1, f"seq {event.seq} after {self.last_seq}"
            assert event.summary not in self.summaries, f"event {event.summary} appended twice"
            self.last_seq = event.seq
            self.summaries.add(event.summary)
        self.verified += len(complete) + (1 if complete else 0)
        lost = {line.split()[1] for line in accepted} - self.summaries
        assert not lost, f"accepted but not in the log: {sorted(lost)}"
        assert Ledger(SwarmHome(self.home)).last_seq() == self.last_seq, "a reader did not skip the torn line"
        assert crashproc.lock_is_free(self.home / "ledger" / ".lock"), "the dead appender's lock is still held"
        return bool(torn)

    def append_after(self) -> None:
        """Append from the reader's side: it must repair a torn line and take the next seq."""
        event = self.ledger.append(EventType.FINDING, "boss", summary=f"after-{self.last_seq}")
        assert event.seq == self.last_seq + 1, f"the append after a kill took seq {event.seq}, not {self.last_seq + 1}"
        assert not self.check([f"{event.seq} {event.summary}"]), "the next append left a torn line"
        assert self.path.stat().st_size == self.verified


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return b""


@pytest.fixture
def witness(tmp_path: Path) -> Iterator[LedgerWitness]:
    with crashproc.scratch_dir(tmp_path) as scratch:
        yield LedgerWitness(scratch / "home")


def crash_at_points(witness: LedgerWitness, kills_per_point: int, seed: int) -> Counter[str]:
    rng = random.Random(seed)
    for point in LEDGER_POINTS:
        for _ in range(kills_per_point):
            kill_at_point(witness, point, rng)
    return witness.counts


def kill_at_point(witness: LedgerWitness, point: str, rng: random.Random) -> None:
    """Crash one appender at the n-th pass through `point`; check exactly what that step may leave."""
    nth = rng.randint(1, 4)
    before = witness.last_seq
    body = crashproc.appender(witness.home, nth + 5, LARGEST_FILLER, rng.getrandbits(32))
    status, accepted = crashproc.reap(*crashproc.fork_child(body, f"{point}:{nth}"))
    assert crashproc.killed(status), f"the appender was not killed at {point}:{nth} (status {status})"
    assert len(accepted) == nth - 1
    torn = witness.check(accepted)
    assert torn == (point == "ledger.torn_write"), f"{point}: torn line {torn}"
    written_not_accepted = witness.last_seq - before - len(accepted)
    assert written_not_accepted == (1 if point == "ledger.written" else 0), point
    witness.append_after()
    witness.counts[point] += 1


def crash_at_random(witness: LedgerWitness, kills: int, seed: int) -> Counter[str]:
    """Kill appenders after a random number of appends plus a random delay (a few appends long)."""
    rng = random.Random(seed)
    for _ in range(kills):
        before = witness.last_seq
        body = crashproc.appender(witness.home, 10_000, LARGEST_FILLER, rng.getrandbits(32))
        pid, reports = crashproc.fork_child(body)
        status, accepted = crashproc.kill_after(pid, reports, rng.randint(0, 3), rng.uniform(0, 0.002))
        assert crashproc.killed(status), f"the appender ended before the kill (status {status})"
        torn = witness.check(accepted)
        witness.counts["random"] += 1
        witness.counts["random: torn line"] += torn
        witness.counts["random: written, not reported"] += witness.last_seq - before - len(accepted)
        witness.append_after()
    return witness.counts


def test_appender_killed_at_each_step(witness: LedgerWitness) -> None:
    counts = crash_at_points(witness, KILLS_PER_POINT, seed=1)
    print(f"\nledger kills per crash point: {dict(counts)}")
    assert all(counts[p] == KILLS_PER_POINT for p in LEDGER_POINTS)
    assert len(witness.ledger.events()) == witness.last_seq


def test_appender_killed_at_random_moments(witness: LedgerWitness) -> None:
    counts = crash_at_random(witness, RANDOM_KILLS, seed=2)
    print(f"\nledger random kills: {dict(counts)}")
    assert counts["random"] == RANDOM_KILLS
    assert len(witness.ledger.events()) == witness.last_seq


@pytest.mark.soak
def test_soak_appender_kills(witness: LedgerWitness) -> None:
    crash_at_points(witness, 2_000, seed=3)
    counts = crash_at_random(witness, 20_000, seed=4)
    print(f"\nledger soak kills: {dict(counts)}")


@pytest.mark.parametrize("point", LEDGER_POINTS)
def test_a_supervisor_killed_while_assigning_never_leaves_a_task_assigned_to_an_unknown_worker(
        swarm_home: SwarmHome, point: str) -> None:
    """Assigning a task and registering its worker were two appends: a supervisor killed between them left an
    assigned task whose worker the registry never knew. They are one write now, the registration first."""
    init_home(swarm_home)
    Ledger(swarm_home, durable=False).add_task(Task(id="t", title="t", description="true"), "operator")

    def assign(_report: int) -> None:
        supervisor = Supervisor(swarm_home)
        supervisor.begin_attempt(supervisor.ledger.task("t"))

    status, _ = crashproc.reap(*crashproc.fork_child(assign, crash_at=f"{point}:1"))
    assert crashproc.killed(status), "killed at the first append of the assignment"
    ledger = Ledger(swarm_home)
    assigned, registered = ledger.task("t").status == TaskStatus.ASSIGNED, ledger.knows_agent("w1")
    assert registered or not assigned, "the task is assigned to a worker the registry does not know"
    if point == "ledger.written":
        assert assigned and registered, "the whole write was made"

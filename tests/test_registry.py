"""The registry fold, heartbeats kept out of the log, and staleness by moving an injected clock."""

from datetime import UTC, datetime, timedelta

import pytest

from protocol.agent import AgentStatus, RegistryEntry
from protocol.errors import InvalidName
from protocol.event import EventType
from swarmd.errors import LedgerError
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.ledger.registry import LIVE_STATUSES


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def led(swarm_home: SwarmHome, clock: Clock) -> Ledger:
    return Ledger(swarm_home, durable=False, stale_after=60, clock=clock)


def live(led: Ledger, role: str) -> list[str]:
    return sorted(e.name for e in led.registry().values() if e.role == role and e.status in LIVE_STATUSES)


def test_register_update_stop(led: Ledger, clock: Clock) -> None:
    led.register_agent(RegistryEntry(name="w1", started=clock()), "supervisor")
    led.update_agent("w1", "supervisor", status=AgentStatus.BUSY, task="t-1", pid=42)
    entry = led.registry()["w1"]
    assert (entry.status, entry.task, entry.pid) == (AgentStatus.BUSY, "t-1", 42)
    led.append(EventType.AGENT_STOPPED, "supervisor", name="w1", status="dead", reason="pane died")
    assert led.registry()["w1"].status == AgentStatus.DEAD and led.registry()["w1"].task is None


def test_agent_stopped_by_itself(led: Ledger, clock: Clock) -> None:
    led.register_agent(RegistryEntry(name="w2", started=clock()), "supervisor")
    led.append(EventType.AGENT_STOPPED, "w2", status="stopped", reason="finished")
    assert led.registry()["w2"].status == AgentStatus.STOPPED


def test_heartbeats_are_not_events(led: Ledger, clock: Clock) -> None:
    led.register_agent(RegistryEntry(name="w1", started=clock()), "supervisor")
    before = led.last_seq()
    for _ in range(5):
        clock.advance(1)
        led.heartbeat("w1")
    assert led.last_seq() == before
    assert led.registry()["w1"].last_heartbeat == clock()


def test_stale_after_silence_and_discover_excludes_it(led: Ledger, clock: Clock) -> None:
    for name in ("w1", "w2", "w3"):
        led.register_agent(RegistryEntry(name=name, started=clock()), "supervisor")
        led.heartbeat(name)
    led.register_agent(RegistryEntry(name="r1", role="reviewer", started=clock()), "supervisor")
    led.append(EventType.AGENT_STOPPED, "w3", status="stopped")
    assert live(led, "worker") == ["w1", "w2"]
    clock.advance(45)
    led.heartbeat("w1")
    clock.advance(30)  # w2 silent for 75 s > 60 s; w1 for 30 s
    assert led.registry()["w2"].status == AgentStatus.STALE
    assert led.registry()["w3"].status == AgentStatus.STOPPED  # stopped stays stopped, never stale
    assert live(led, "worker") == ["w1"]
    assert led.registry()["r1"].status == AgentStatus.STALE  # never beat: judged from its start
    led.heartbeat("w2")
    assert live(led, "worker") == ["w1", "w2"]


def test_refusals(led: Ledger, clock: Clock) -> None:
    with pytest.raises(LedgerError, match="no agent 'ghost'"):
        led.update_agent("ghost", "supervisor", status="idle")
    led.register_agent(RegistryEntry(name="w1", started=clock()), "supervisor")
    with pytest.raises(LedgerError, match="derived from heartbeats"):
        led.update_agent("w1", "supervisor", status="stale")
    with pytest.raises(LedgerError, match="cannot update agent field started"):
        led.update_agent("w1", "supervisor", started=clock())
    with pytest.raises(LedgerError, match="status"):
        led.update_agent("w1", "supervisor", status="sleeping")
    with pytest.raises(LedgerError, match="register_agent"):
        led.append(EventType.AGENT_REGISTERED, "supervisor", entry={"name": "x"})
    with pytest.raises(InvalidName):
        led.heartbeat("../escape")

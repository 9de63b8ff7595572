"""Advisory file reservations: granted even when they overlap, with the conflict reported to both sides."""

import json

import pytest

from agentmail import PostOffice
from conftest import run_cli
from swarmd.git.reservations import ReservationError, Reservations, overlaps
from swarmd.home import SwarmHome, init_home


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def home(swarm_home: SwarmHome) -> SwarmHome:
    init_home(swarm_home)
    return swarm_home


def test_conflicting_request_is_granted_and_reported_to_both(home: SwarmHome) -> None:
    PostOffice(home.root).register("w1")
    res = Reservations(home)
    granted, conflicts = res.reserve("w1", ["src/app.py", "docs/"], exclusive=True)
    assert [g.path for g in granted] == ["src/app.py", "docs/"] and conflicts == []
    granted, conflicts = res.reserve("w2", ["src/*.py"], exclusive=False)
    assert [g.path for g in granted] == ["src/*.py"]
    assert [(c.holder, c.held) for c in conflicts] == [("w1", "src/app.py")]
    held = {(r.agent, r.path): r for r in res.list()}
    assert held[("w1", "src/app.py")].conflicts == ["w2"]
    assert held[("w2", "src/*.py")].conflicts == ["w1"]
    told = [m for m in PostOffice(home.root).mailbox("w1").list()]
    assert any("src/app.py" in m.message.body.text for m in told)


def test_shared_reservations_do_not_conflict_and_ttl_expires(home: SwarmHome) -> None:
    clock = Clock()
    res = Reservations(home, clock=clock)
    res.reserve("w1", ["a.txt"], exclusive=False, ttl=10)
    assert res.reserve("w2", ["a.txt"], exclusive=False)[1] == []
    clock.now += 11
    assert [r.agent for r in res.list()] == ["w2"]
    assert res.reserve("w3", ["a.txt"])[1][0].holder == "w2"


def test_release_and_touching(home: SwarmHome) -> None:
    res = Reservations(home)
    res.reserve("w1", ["lib/", "x.py"])
    assert [c.held for c in res.touching("w2", ["lib/deep/m.py", "y.py"])] == ["lib/"]
    assert res.touching("w1", ["lib/deep/m.py"]) == []
    assert res.release("w1", ["x.py"]) == 1
    assert res.release("w1") == 1
    assert res.list() == []


@pytest.mark.parametrize("bad", ["/etc/passwd", "../up", "", "a/../../b"])
def test_bad_paths_are_refused(home: SwarmHome, bad: str) -> None:
    with pytest.raises(ReservationError):
        Reservations(home).reserve("w1", [bad])


def test_overlaps() -> None:
    assert overlaps("src/*.py", "src/a.py") and overlaps("src", "src/a/b.py") and overlaps("src/*", "src/a/b.py")
    assert not overlaps("src/a.py", "src/b.py") and not overlaps("docs/", "src/")


def test_cli_reserve_list_release(home: SwarmHome) -> None:
    env = {"SWARM_HOME": str(home.root)}
    out = run_cli("swarm", "reserve", "--agent", "w1", "src/a.py", "--json", env=env)
    assert out.returncode == 0, out.stderr
    out = run_cli("swarm", "reserve", "--agent", "w2", "--shared", "src/", "--json", env=env)
    assert json.loads(out.stdout)["conflicts"][0]["holder"] == "w1"
    listed = json.loads(run_cli("swarm", "reservations", "--json", env=env).stdout)
    assert {(r["agent"], r["path"]) for r in listed} == {("w1", "src/a.py"), ("w2", "src/")}
    out = run_cli("swarm", "release", "--agent", "w1", "--json", env=env)
    assert json.loads(out.stdout) == {"released": 1}
    bad = run_cli("swarm", "reserve", "--agent", "w1", "../x", env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("swarm: error:") and "Traceback" not in bad.stderr

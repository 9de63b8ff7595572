"""Per-host NATS logins (`swarm logins`): a host may publish only for its own workers, and the NATS server, not
only the supervisor, holds it to that."""

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import run_cli
from hostkit import HostedSwarm
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmkit import write_plan


def make_logins(root: Path, *hosts: str) -> Path:
    out = root / "logins"
    done = run_cli("swarm", "logins", *(a for h in hosts for a in ("--host", h)), "--swarm", "t", "--out", str(out),
                   "--json")
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture
def guarded(tmp_path: Path, swarm_home: SwarmHome) -> Iterator[HostedSwarm]:
    """Hosts on loopback whose NATS server takes the block `swarm logins` wrote for hosts a and b."""
    swarm = HostedSwarm(None, tmp_path, swarm_home, logins=make_logins(tmp_path, "a", "b"))
    try:
        yield swarm
    finally:
        swarm.close()


def test_a_host_with_its_login_runs_the_supervisors_workers(guarded: HostedSwarm) -> None:
    guarded.config(max_workers=1, local_workers=False)
    guarded.join("a", slots=1)
    plan = write_plan(guarded.root / "plan.json", [{"id": "job", "title": "job", "description": "echo ran on a"}])
    home = ["--home", str(guarded.home.root)]
    try:
        done = run_cli("swarm", "run", str(plan), *home, "--wait", "--timeout", "60s")
    finally:
        run_cli("swarm", "down", *home)
    assert done.returncode == 0, done.stdout + done.stderr
    task = Ledger(guarded.home).task("job")
    assert task.status == "done"
    worker = task.attempts[0].worker
    assert "ran on a" in (guarded.host_home("a") / "logs" / f"{worker}.log").read_text()

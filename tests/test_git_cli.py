"""The git commands' refusals: one line, exit 2, never a traceback; a plan's `[git]` table checked on load."""

import json
from pathlib import Path

import pytest

from swarmd.home import SwarmHome
from swarmd.plans.plan import PlanError, load_plan
from conftest import run_cli
from swarmkit import init_home


def test_refusals_are_one_line_and_the_empty_queue(swarm_home: SwarmHome) -> None:
    init_home(swarm_home)
    for args in (["diff", "nope"], ["land"], ["land", "--into", "x"], ["reserve", "--agent", "W!", "a"],
                 ["release", "--agent", "../x"]):
        result = run_cli("swarm", *args, "--home", str(swarm_home.root))
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.startswith("swarm: error:") and len(result.stderr.strip().splitlines()) == 1, args
    out = run_cli("swarm", "queue", "--json", "--home", str(swarm_home.root))
    assert json.loads(out.stdout) == {"waiting": [], "landed": [], "failed": []}


@pytest.mark.parametrize("table, error", [
    ({"name": "Bad Name"}, "name: 'Bad Name' cannot name branches"),
    ({"git": {"isolation": "sometimes"}}, "git: isolation"),
    ({"git": {"integration": "no..dots"}}, "not a valid branch name"),
    ({"git": {"checks": [{"kind": "command"}]}}, "git: checks.0: a command check needs 'run'"),
    ({"git": {"worktree": True}}, "git: unknown key 'worktree'"),
])
def test_bad_git_tables_are_refused(tmp_path: Path, table: dict, error: str) -> None:
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps({**table, "tasks": [{"id": "a", "title": "a"}]}))
    with pytest.raises(PlanError, match=error.replace(".", r"\.").replace("(", r"\(")):
        load_plan(plan)


def test_plan_settings_ride_on_each_task(tmp_path: Path) -> None:
    plan = tmp_path / "My Plan.toml"
    plan.write_text('[git]\nisolation = "worktree"\nchecks = [{ kind = "tests", run = "true" }]\n'
                    '[[tasks]]\nid = "a"\ntitle = "a"\n')
    task = load_plan(plan).tasks[0]
    assert task.metadata["git"] == {"plan": "my-plan", "isolation": "worktree",
                                    "checks": [{"kind": "tests", "paths": [], "run": "true", "timeout": 120.0}]}

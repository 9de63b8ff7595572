"""The skills hub: skills are mirrored into each worker's agent skills directory at spawn, and a skill added,
changed or removed while workers run reaches them without a restart, with a feed event."""

import os
from pathlib import Path

from protocol.task import TaskStatus
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from conftest import run_cli
from swarmkit import init_home, wait_until, write_plan

CLAUDE_PROFILE = ('\n[profiles.script]\ncommand = "{{python}} -m swarmd.worker --script"\n'
                  'env = {{ CLAUDE_CONFIG_DIR = "{dir}" }}\n')


def _skill(root: Path, name: str, text: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "SKILL.md").write_text(f"---\nname: {name}\ndescription: {text}\n---\n")
    return folder


def test_a_skill_added_mid_run_reaches_the_running_workers_skills_dir(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home, max_workers=1)
    claude_dir = tmp_path / "claude-config"
    with open(swarm_home.config_file, "a") as config:
        config.write(CLAUDE_PROFILE.format(dir=claude_dir))
    home = str(swarm_home.root)
    first = run_cli("swarm", "skills", "add", str(_skill(tmp_path / "src", "review", "v1")), "--home", home)
    assert first.returncode == 0, first.stderr
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    plan = write_plan(tmp_path / "plan.json", [{"id": "job", "title": "waits", "description": f"cat {gate}"}])
    assert run_cli("swarm", "run", str(plan), "--home", home).returncode == 0
    try:
        ledger = Ledger(swarm_home)
        wait_until(lambda: ledger.task("job").status == TaskStatus.IN_PROGRESS, 60, "the worker to start")
        hub = claude_dir / "skills" / "_hub"
        assert (hub / "review" / "SKILL.md").read_text().endswith("description: v1\n---\n"), "synced at spawn"

        added = run_cli("swarm", "skills", "add", str(_skill(tmp_path / "src", "deploy", "how to deploy")),
                        "--home", home)
        assert added.returncode == 0, added.stderr
        wait_until(lambda: (hub / "deploy" / "SKILL.md").is_file(), 30, "the new skill in the running worker's dir")
        _skill(tmp_path / "src", "review", "v2")
        assert run_cli("swarm", "skills", "add", str(tmp_path / "src" / "review"), "--home", home).returncode == 0
        assert run_cli("swarm", "skills", "remove", "deploy", "--home", home).returncode == 0
        wait_until(lambda: not (hub / "deploy").exists() and "v2" in (hub / "review" / "SKILL.md").read_text(), 30,
                   "the change and the removal in the running worker's dir")
        summaries = [e.summary for e in ledger.events(types=["custom"])]
        assert "skill deploy added to the hub" in summaries
        assert any(s.startswith("skills hub changed:") and s.endswith("mirrored into 1 workers") for s in summaries)
        listed = run_cli("swarm", "skills", "list", "--home", home, "--json")
        assert '"name": "review"' in listed.stdout and "deploy" not in listed.stdout
        gate.write_text("")
        wait_until(lambda: ledger.task("job").status == TaskStatus.DONE, 60, "the worker to finish")
    finally:
        run_cli("swarm", "down", "--teardown", "--home", home)

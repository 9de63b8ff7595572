"""Setup mistakes cost no attempts: a worker that cannot start blocks its task once, and a running supervisor
takes up a changed swarm.toml."""

from pathlib import Path

from protocol.event import EventType
from protocol.task import AttemptOutcome, TaskStatus
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.supervisor.loop import Supervisor
from conftest import run_cli
from swarmkit import init_home, write_plan


def _add_profile(home: SwarmHome, name: str, program: Path) -> None:
    with home.config_file.open("a") as config:
        config.write(f'\n[profiles.{name}]\ncommand = "{{python}} -m swarmd.worker -- {program}"\n')


def test_a_worker_that_cannot_start_blocks_its_task_once_and_spends_no_attempt(swarm_home: SwarmHome,
                                                                               tmp_path: Path) -> None:
    init_home(swarm_home)
    agent = tmp_path / "agent"  # there and executable, but its interpreter is missing: exec fails every time
    agent.write_text("#!/nonexistent/interpreter\n")
    agent.chmod(0o755)
    _add_profile(swarm_home, "broken", agent)
    plan = write_plan(tmp_path / "plan.json", [
        {"id": "a", "title": "needs the agent", "description": "anything", "profile": "broken"},
        {"id": "b", "title": "independent", "description": "true"}])
    result = run_cli("swarm", "run", str(plan), "--home", str(swarm_home.root), "--wait", "--timeout", "60s",
                     timeout=90)
    assert result.returncode == 1, result.stdout + result.stderr
    ledger = Ledger(swarm_home)
    task = ledger.task("a")
    assert task.status == TaskStatus.BLOCKED
    assert [a.outcome for a in task.attempts] == [AttemptOutcome.ABANDONED], "one launch, no attempt spent"
    assert "cannot start" in task.attempts[0].reason and str(agent) in task.attempts[0].reason
    blockers = [e for e in ledger.events() if e.type == EventType.BLOCKER_FOUND and e.task == "a"]
    assert len(blockers) == 1 and "swarm retry a" in blockers[0].summary
    assert ledger.task("b").status == TaskStatus.DONE


def test_a_running_supervisor_takes_up_a_changed_swarm_toml(swarm_home: SwarmHome, tmp_path: Path) -> None:
    """A profile added to swarm.toml after `swarm up` was unknown to the running supervisor: three attempts
    burnt in a second."""
    init_home(swarm_home)
    assert run_cli("swarm", "up", "--home", str(swarm_home.root)).returncode == 0
    try:
        _add_profile(swarm_home, "late", Path("/bin/true"))
        plan = write_plan(tmp_path / "plan.json", [{"id": "t", "title": "new profile", "description": "x",
                                                    "profile": "late"}])
        result = run_cli("swarm", "run", str(plan), "--home", str(swarm_home.root), "--wait", "--timeout", "60s",
                         timeout=90)
        assert result.returncode == 0, result.stdout + result.stderr
        assert [a.outcome for a in Ledger(swarm_home).task("t").attempts] == [AttemptOutcome.DONE]
    finally:
        run_cli("swarm", "down", "--home", str(swarm_home.root))


def test_a_broken_swarm_toml_is_reported_once_and_the_settings_in_force_stay(swarm_home: SwarmHome) -> None:
    init_home(swarm_home)
    supervisor = Supervisor(swarm_home)
    before = supervisor.config
    swarm_home.config_file.write_text("max_workers = 'many'\n")
    for _ in range(3):
        supervisor.reload_config()
    assert supervisor.config is before
    reported = [e for e in Ledger(swarm_home).events() if "cannot be used" in e.summary]
    assert len(reported) == 1 and "max_workers" in reported[0].summary
    swarm_home.config_file.write_text("max_workers = 7\n")
    supervisor.reload_config()
    assert supervisor.config.max_workers == 7
    supervisor.checks.shutdown()

"""Where a swarm lives and works: the home is found upward like `.git`, is never made by accident, keeps
itself out of git, and workers run in the project (never in the folder that holds a home kept elsewhere)."""

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import run_cli
from protocol.event import EventType
from protocol.task import TaskStatus
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmkit import FAST_CONFIG, events, write_plan

NO_HOME = "swarm: error: no swarm home here or in any parent: run `swarm init`"


def _kill_tmux(home: SwarmHome) -> None:
    if home.tmux_socket.exists() and shutil.which("tmux"):
        subprocess.run(["tmux", "-S", str(home.tmux_socket), "kill-server"], capture_output=True, check=False)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """An empty project directory; the tmux server of its `.swarm`, if a test starts one, is killed after."""
    path = tmp_path / "project"
    path.mkdir()
    yield path
    _kill_tmux(SwarmHome(path / ".swarm"))


def _fast(home: SwarmHome) -> None:
    """Fast timings for tests, keeping the `project` line that `swarm init` may have written."""
    kept = [line for line in home.config_file.read_text().splitlines() if line.startswith("project = ")]
    home.config_file.write_text(FAST_CONFIG.format(max_workers=2, heartbeat=1.0, stale=30.0) + "\n".join(kept) + "\n")


def test_run_from_a_subdirectory_uses_the_home_of_a_parent(project: Path) -> None:
    assert run_cli("swarm", "init", cwd=project).returncode == 0
    home = SwarmHome(project / ".swarm")
    _fast(home)
    plan = write_plan(project / "plan.json", [
        {"id": "made", "title": "make a file", "description": "echo made > made.txt",
         "validation": {"checks": [{"kind": "files_exist", "paths": ["made.txt"]}]}}])
    sub = project / "src" / "deep"
    sub.mkdir(parents=True)
    result = run_cli("swarm", "run", "../../plan.json", "--wait", "--timeout", "60s", cwd=sub, timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "created swarm home" not in result.stderr
    assert not (sub / ".swarm").exists() and not (project / "src" / ".swarm").exists(), "no second home"
    assert (project / "made.txt").read_text() == "made\n", "the task ran beside its plan"
    again = run_cli("swarm", "run", str(plan), "--json", cwd=sub)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["added"] == [], "the second run found the same board: nothing runs twice"
    assert [e.task for e in events(home) if e.type == EventType.TASK_CREATED] == ["made"]
    board = run_cli("swarm", "board", "--json", cwd=sub)
    assert [t["status"] for t in json.loads(board.stdout)] == ["done"]
    assert run_cli("swarm", "down", cwd=sub).returncode == 0
    inbox = run_cli("agentmail", "inbox", "operator", cwd=sub)
    assert inbox.returncode == 0 and "no unread mail for operator" in inbox.stdout, "agentmail finds it too"


@pytest.mark.parametrize("args", [
    ("status",), ("board",), ("feed",), ("stats",), ("task", "add", "x"), ("up",), ("down",), ("kill", "w1"),
    ("logs", "w1"), ("steer", "w1", "hi"), ("retry", "t-1"), ("registry", "list"), ("teardown",),
])
def test_commands_without_a_home_refuse_in_one_line_and_make_none(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = run_cli("swarm", *args, cwd=tmp_path)
    assert result.returncode == 2, result
    assert result.stderr.strip() == NO_HOME, result.stderr
    assert list(tmp_path.iterdir()) == [], "nothing was created"


def test_agentmail_send_without_a_home_refuses_instead_of_losing_the_message(tmp_path: Path) -> None:
    result = run_cli("agentmail", "send", "--from", "w1", "--to", "supervisor", "--type", "PROGRESS",
                     "--field", "step=x", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "agentmail: error: no swarm home here or in any parent: run `swarm init`"
    named = run_cli("agentmail", "send", "--home", str(tmp_path / "nowhere"), "--from", "w1", "--to", "sup",
                    "--type", "PROGRESS", cwd=tmp_path)
    assert named.returncode == 2 and "no swarm home at" in named.stderr and len(named.stderr.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
    assert run_cli("agentmail", "schema", "DONE", cwd=tmp_path).returncode == 0, "schema needs no home"


def test_only_init_and_run_make_a_home_and_run_says_so(project: Path) -> None:
    refused = run_cli("swarm", "run", "no-such-plan.json", cwd=project)
    assert refused.returncode == 2 and not (project / ".swarm").exists(), "a refused plan leaves no home behind"
    plan = write_plan(project / "plan.json", [{"id": "a", "title": "a", "description": "true"}])
    result = run_cli("swarm", "run", "plan.json", "--json", cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == f"created swarm home at {project / '.swarm'}"
    assert json.loads(result.stdout)["added"] == ["a"]
    assert run_cli("swarm", "down", cwd=project).returncode == 0
    again = run_cli("swarm", "run", str(plan), "--json", cwd=project)
    assert again.returncode == 0 and "created" not in again.stderr
    run_cli("swarm", "down", cwd=project)


def test_a_home_kept_elsewhere_runs_and_validates_tasks_in_the_project(project: Path, tmp_path: Path) -> None:
    home = SwarmHome(tmp_path / "homes" / "mine")
    env = {"SWARM_HOME": str(home.root)}
    try:
        assert run_cli("swarm", "init", env=env, cwd=project).returncode == 0
        assert re.search(r'^project = ".*/project"', home.config_file.read_text(), re.M), "init recorded it"
        _fast(home)
        by_hand = run_cli("swarm", "task", "add", "by hand", "--id", "hand", "--description", "pwd > where.txt",
                          env=env, cwd=tmp_path)
        assert by_hand.returncode == 0, by_hand.stderr
        plan = write_plan(project / "plan.json", [  # waits on a task already on the board, from no plan
            {"id": "planned", "title": "planned", "blocked_by": ["hand"], "description": "echo ok > planned.txt",
             "validation": {"checks": [{"kind": "files_exist", "paths": ["planned.txt", "where.txt"]},
                                       {"kind": "command", "run": "test -f plan.json"}]}}])
        result = run_cli("swarm", "run", str(plan), "--wait", "--timeout", "60s", env=env, cwd=tmp_path, timeout=90)
        assert result.returncode == 0, result.stdout + result.stderr
        assert (project / "where.txt").read_text().strip() == str(project), "a task added by hand ran in the project"
        assert not (home.root.parent / "where.txt").exists() and not (home.root.parent / "planned.txt").exists()
        board = Ledger(home).board()
        assert board["hand"].status == board["planned"].status == TaskStatus.DONE
        worker = board["planned"].attempts[-1].worker
        prompt = (home.prompts_dir / f"{worker}.md").read_text()
        assert f"agentmail send --home {home.root} --from {worker} --to supervisor --type DONE" in prompt
    finally:
        run_cli("swarm", "down", env=env)
        _kill_tmux(home)


def test_init_keeps_the_home_out_of_git(project: Path) -> None:
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    (project / "code.py").write_text("print('hi')\n")
    assert run_cli("swarm", "init", cwd=project).returncode == 0
    assert (project / ".swarm" / ".gitignore").read_text().splitlines()[-1] == "*"
    added = subprocess.run(["git", "add", "-A"], cwd=project, capture_output=True, text=True)
    assert added.returncode == 0, added.stderr
    status = subprocess.run(["git", "status", "--porcelain"], cwd=project, capture_output=True, text=True).stdout
    assert status.splitlines() == ["A  code.py"], status

"""Isolation and integration end to end: a real git repository, a real supervisor and script workers, each
attempt in its own worktree, validated work landing through the merge queue."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from protocol.event import EventType
from protocol.task import AttemptOutcome, Task, TaskStatus
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.supervisor.loop import Supervisor
from conftest import run_cli
from gitkit import dangling_commits, git, isolate_git, make_repo, task_commits, tree_snapshot
from swarmkit import init_home

README = "top line\n" + "".join(f"filler {i}\n" for i in range(20)) + "bottom line\n"
INTEGRATION = "swarm/demo/_integration"


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    isolate_git(monkeypatch, tmp_path)
    path = make_repo(tmp_path / "repo", {"README": README, "lib.txt": "header\n", ".env": "ignored\n",
                                         ".gitignore": ".env\n"})
    (path / "notes.txt").write_text("the user's own uncommitted notes\n")  # untracked, must stay as is
    (path / "README").write_text(README + "an uncommitted edit of the user\n")
    return path


def commit(msg: str) -> str:
    return f" && git add -A && git commit -q -m '{msg}'"


def eight_tasks() -> list[dict]:
    """A diamond (a -> b, c -> d) and four independent tasks; b and c append at the same place of lib.txt
    (a conflicting pair), e and f edit README far apart (they merge cleanly)."""
    lib = {"kind": "content_check", "path": "lib.txt"}
    return [
        {"id": "a", "title": "root", "description": "echo 'from a' >> lib.txt" + commit("a: lib"),
         "validation": {"checks": [{**lib, "pattern": "from a"}]}},
        {"id": "b", "title": "left", "description": "echo 'from b' >> lib.txt" + commit("b: lib"),
         "blocked_by": ["a"], "validation": {"checks": [{**lib, "pattern": "from b"}]}},
        {"id": "c", "title": "right", "description": "echo 'from c' >> lib.txt", "blocked_by": ["a"],
         "validation": {"checks": [{**lib, "pattern": "from c"}]}},
        {"id": "d", "title": "join", "description": "cat lib.txt > joined.txt" + commit("d: joined"),
         "blocked_by": ["b", "c"],
         "validation": {"checks": [{**lib, "pattern": "from a\nfrom [bc]\nfrom [bc]"},
                                   {"kind": "files_exist", "paths": ["joined.txt"]}]}},
        {"id": "e", "title": "top", "description": "sed -i 's/^top line$/top line (e)/' README" + commit("e")},
        {"id": "f", "title": "bottom", "description": "sed -i 's/^bottom line$/bottom line (f)/' README"},
        {"id": "g", "title": "own file", "description": "mkdir -p g && echo g > g/out.txt" + commit("g"),
         "validation": {"checks": [{"kind": "command", "run": "test -f g/out.txt && test -f .env"}]}},
        {"id": "h", "title": "uncommitted", "description": "echo h > h.txt",
         "validation": {"checks": [{"kind": "files_exist", "paths": ["h.txt"]}]}},
    ]


def run_plan(home: SwarmHome, tmp_path: Path, tasks: list[dict], git_table: dict | None = None,
             timeout: int = 150) -> None:
    plan = tmp_path / "demo.json"
    plan.write_text(json.dumps({"git": {"include": [".env"], **(git_table or {})},
                                "defaults": {"workdir": "repo", "max_attempts": 3}, "tasks": tasks}))
    result = run_cli("swarm", "run", str(plan), "--home", str(home.root), "--wait", "--timeout", f"{timeout}s",
                     timeout=timeout + 30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_eight_tasks_land_once_each_and_the_user_tree_is_untouched(swarm_home: SwarmHome, tmp_path: Path,
                                                                  repo: Path) -> None:
    init_home(swarm_home, max_workers=4)
    before = tree_snapshot(repo)
    run_plan(swarm_home, tmp_path, eight_tasks())
    board = Ledger(swarm_home).board()
    assert {t.id: t.status for t in board.values()} == {t: TaskStatus.DONE for t in "abcdefgh"}
    assert tree_snapshot(repo) == before, "the user's branch and working tree are byte-for-byte unchanged"

    # every task's change is on the integration branch, each landed exactly once
    landings = git(repo, "log", "--format=%B%x00", INTEGRATION).split("\0")
    for task in "abcdefgh":
        assert sum(f"Swarm-Task: {task}\n" in m and m.strip().startswith("Merge ") for m in landings) == 1, task
    assert git(repo, "show", f"{INTEGRATION}:README").splitlines()[0] == "top line (e)"
    assert git(repo, "show", f"{INTEGRATION}:README").splitlines()[-1] == "bottom line (f)"
    assert git(repo, "show", f"{INTEGRATION}:h.txt") == "h"
    assert ".env" not in git(repo, "ls-tree", "-r", "--name-only", INTEGRATION)  # carried in, never committed
    lib = git(repo, "show", f"{INTEGRATION}:lib.txt").splitlines()
    assert lib[:2] == ["header", "from a"] and sorted(lib[2:]) == ["from b", "from c"]

    # the conflicting pair: one merged at once, the other failed on the conflict and was retried from the
    # new tip with the conflict in its prompt
    retried = [board[t] for t in "bc" if len(board[t].attempts) > 1]
    assert len(retried) == 1, [board[t].attempts for t in "bc"]
    loser = retried[0]
    first, last = loser.attempts[0], loser.attempts[-1]
    assert first.outcome == AttemptOutcome.FAILED and "merge conflict" in first.reason and "lib.txt" in first.reason
    prompt = (swarm_home.prompts_dir / f"{last.worker}.md").read_text()
    assert "merge conflict" in prompt and "lib.txt" in prompt
    events = list(Ledger(swarm_home).events())
    assert not [e.summary for e in events if "supervisor error" in e.summary]
    winner = "c" if loser.id == "b" else "b"
    landed = next(e for e in events if e.type == EventType.TASK_COMPLETED and e.task == winner).detail["merge"]
    retry_tree = [e for e in events if e.type == EventType.WORKTREE_CREATED and e.task == loser.id][-1].detail
    assert git(repo, "merge-base", "--is-ancestor", landed["new"], retry_tree["base"]) == ""

    # the worker's leftovers were committed on its branch, by the worker, with task and attempt
    h_tree = next(e for e in events if e.type == EventType.WORKTREE_CREATED and e.task == "h").detail
    message = git(repo, "log", "-1", "--format=%an|%B", h_tree["branch"])
    assert message.startswith(f"t {board['h'].attempts[-1].worker}|[h] attempt 1")
    assert "Swarm-Task: h" in message
    assert not set(dangling_commits(repo)) & task_commits(repo)

    # the faces: diff of a task, the (now empty) queue, landing on the user's branch only when asked
    diff = run_cli("swarm", "diff", "h", "--home", str(swarm_home.root))
    assert diff.returncode == 0 and "+h" in diff.stdout, diff.stderr
    queue = json.loads(run_cli("swarm", "queue", "--json", "--home", str(swarm_home.root)).stdout)
    assert queue["waiting"] == [] and {e["task"] for e in queue["failed"]} == {loser.id}
    assert {e["task"] for e in queue["landed"]} == set("abcdefgh")

    # landing: only a fast-forward, never over the user's uncommitted edits; a branch not checked out moves
    tip = git(repo, "rev-parse", INTEGRATION)
    refused = run_cli("swarm", "land", "--into", "main", "--home", str(swarm_home.root))
    assert refused.returncode == 2 and refused.stderr.startswith("swarm: error:"), refused.stderr
    assert tree_snapshot(repo) == before
    git(repo, "branch", "diverged", "main")
    git(repo, "update-ref", "refs/heads/diverged", git(repo, "commit-tree", "-p", "main", "-m", "x",
                                                          "main^{tree}"))
    assert run_cli("swarm", "land", "--into", "diverged", "--home", str(swarm_home.root)).returncode == 2
    git(repo, "branch", "release", "main")
    landed_json = run_cli("swarm", "land", "--into", "release", "--json", "--home", str(swarm_home.root))
    assert json.loads(landed_json.stdout)["new"] == tip and git(repo, "rev-parse", "release") == tip

    # clean: worktrees of attempts that are over go; merged branches go; the never-merged one stays
    cleaned = json.loads(run_cli("swarm", "clean", "--json", "--home", str(swarm_home.root)).stdout)["git"]
    kept = {g["path"] for g in cleaned if g["kind"] == "kept"}
    assert kept == {first_branch(events, loser.id)}
    assert git(repo, "rev-parse", "--verify", f"refs/heads/{first_branch(events, loser.id)}")
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") <= 2  # the user's and the queue's
    assert not set(dangling_commits(repo)) & task_commits(repo)


def first_branch(events: list, task: str) -> str:
    return next(e.detail["branch"] for e in events if e.type == EventType.WORKTREE_CREATED and e.task == task)


def test_home_inside_the_repository_never_reaches_a_commit(tmp_path: Path, repo: Path) -> None:
    """The usual layout (`.swarm/` in the repository): parallel workers that `git add -A` and commit each
    commit only their own file, never each other's nor the swarm home (the failure that asked for worktrees)."""
    home = SwarmHome(repo / ".swarm")
    try:
        init_home(home, max_workers=3)
        before = tree_snapshot(repo)
        plan = home.root / "plan.json"  # inside the home: nothing the user's tree would show
        plan.write_text(json.dumps({"name": "demo", "defaults": {"workdir": str(repo)}, "tasks": [
            {"id": f"p{i}", "title": f"file {i}", "description": f"echo {i} > p{i}.txt" + commit(f"p{i}")}
            for i in range(3)]}))
        result = run_cli("swarm", "run", str(plan), "--home", str(home.root), "--wait", "--timeout", "120s",
                         timeout=150)
        assert result.returncode == 0, result.stdout + result.stderr
        assert tree_snapshot(repo) == before
        for i in range(3):
            branch = git(repo, "for-each-ref", "--format=%(refname:short)", f"refs/heads/swarm/demo/p{i}")
            assert git(repo, "diff", "--name-only", f"{branch}~1", branch) == f"p{i}.txt"
        files = set(git(repo, "ls-tree", "-r", "--name-only", INTEGRATION).split())
        assert files == {"README", "lib.txt", ".gitignore", "p0.txt", "p1.txt", "p2.txt"}
    finally:
        run_cli("swarm", "down", "--teardown", "--home", str(home.root), timeout=60)
        subprocess.run(["tmux", "-S", str(home.tmux_socket), "kill-server"], capture_output=True, check=False)


def test_a_profiles_setup_runs_after_the_projects_and_its_teardown_before(swarm_home: SwarmHome, tmp_path: Path,
                                                                         repo: Path) -> None:
    """Set-up and tear-down per profile as well as per plan: the project's set-up first, then the agent's; the
    reverse at tear-down (`swarm clean` removes the worktree); each in the attempt's worktree."""
    init_home(swarm_home)
    log = tmp_path / "order.log"
    step = 'echo "{what} $(basename "$PWD")" >> ' + str(log)
    with swarm_home.config_file.open("a") as config:
        config.write(f"\n[profiles.prepared]\ncommand = \"{{python}} -m swarmd.worker --script\"\n"
                     f"setup = {json.dumps(step.format(what='profile-setup'))}\n"
                     f"teardown = {json.dumps(step.format(what='profile-teardown'))}\n")
    tasks = [{"id": "t", "title": "prepared", "profile": "prepared", "description": "echo t > t.txt",
              "validation": {"checks": [{"kind": "files_exist", "paths": ["t.txt"]}]}}]
    run_plan(swarm_home, tmp_path, tasks, {"setup": step.format(what="project-setup"),
                                           "teardown": step.format(what="project-teardown")})
    assert log.read_text().split() == ["project-setup", "t-a1", "profile-setup", "t-a1"]  # in the worktree
    assert run_cli("swarm", "clean", "--home", str(swarm_home.root)).returncode == 0
    assert log.read_text().split()[4:] == ["profile-teardown", "t-a1", "project-teardown", "t-a1"]


def test_git_is_asked_which_repository_holds_the_work_only_once_a_git_came_or_went(
        swarm_home: SwarmHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Which repository holds a task's directory was asked of git at every dispatch: a process start on the way
    to every worker's start. It is asked again only once a `.git` has come or gone on the way up."""
    isolate_git(monkeypatch, tmp_path)
    calls, shim = tmp_path / "git-calls", tmp_path / "bin"
    shim.mkdir()
    (shim / "git").write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {shutil.which("git")} "$@"\n')
    (shim / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}:{os.environ['PATH']}")
    init_home(swarm_home, max_workers=3)
    with swarm_home.config_file.open("a") as toml:
        toml.write('default_profile = "bare"\n[profiles.bare]\ncommand = "sleep 60"\n')
    supervisor = Supervisor(swarm_home)

    def wave(task: str) -> None:
        supervisor.ledger.add_task(Task(id=task, title=task, description="waits"), "operator")
        supervisor.dispatch()
        assert supervisor.ledger.task(task).status == TaskStatus.ASSIGNED

    def asked() -> int:
        return calls.read_text().count("--show-toplevel") if calls.exists() else 0

    wave("a")
    wave("b")
    assert asked() == 1, "asked once while nothing changed"
    project = swarm_home.root.parent
    (project / "README").write_text("made a repository since\n")
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "README")
    git(project, "commit", "-q", "-m", "initial")
    wave("c")
    trees = [e.task for e in supervisor.ledger.events() if e.type == EventType.WORKTREE_CREATED]
    assert trees == ["c"], "the new repository is seen at the next dispatch"
    supervisor.checks.shutdown()

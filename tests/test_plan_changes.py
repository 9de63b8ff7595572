"""Plans that change and tasks put right: an edited plan says what differs and `--replace` takes it, `swarm
retry` gives a fresh budget, `swarm kill --hold` holds a task, `swarm plan check` and a missing program are
refused before anything starts."""

import json
import os
import re
import subprocess
from pathlib import Path

from conftest import run_cli
from protocol.event import EventType
from protocol.task import AttemptOutcome, TaskStatus
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmkit import events, init_home, wait_until, write_plan

# A PATH with the usual tools and no agent CLI on it (the worker wrapper's own directory is added by swarmd).
BARE_PATH = "/usr/bin:/bin"


def _run(home: SwarmHome, *args: str, env: dict[str, str] | None = None,
         timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run_cli("swarm", *args, "--home", str(home.root), env=env, timeout=timeout)


def _prompt(home: SwarmHome, task_id: str) -> str:
    worker = Ledger(home).task(task_id).attempts[-1].worker
    return (home.prompts_dir / f"{worker}.md").read_text()


def test_an_edited_plan_says_what_differs_and_replace_keeps_done_tasks(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home)
    tasks = [{"id": "first", "title": "first", "description": "true"},
             {"id": "second", "title": "second", "description": "exit 3", "blocked_by": ["first"],
              "max_attempts": 1}]
    plan = write_plan(tmp_path / "plan.json", tasks)
    try:
        result = _run(swarm_home, "run", str(plan), "--wait", "--timeout", "60s", timeout=90)
        assert result.returncode == 1, result.stdout + result.stderr  # second is blocked after its one attempt
        tasks[0]["description"] = "echo changed"
        tasks[1].update(description="true", title="second, fixed")
        write_plan(plan, tasks)
        told = _run(swarm_home, "run", str(plan))
        assert told.returncode == 0, told.stderr
        lines = [line for line in told.stdout.splitlines() if line.startswith("task ")]
        assert lines == ["task first differs from the plan (description): kept the board's; "
                         "`swarm run PLAN --replace` replaces it",
                         "task second differs from the plan (title, description): kept the board's; "
                         "`swarm run PLAN --replace` replaces it"]
        as_json = json.loads(_run(swarm_home, "run", str(plan), "--json").stdout)
        assert as_json["changed"] == {"first": ["description"], "second": ["title", "description"]}
        assert Ledger(swarm_home).task("second").description == "exit 3", "nothing replaced without --replace"

        replaced = json.loads(_run(swarm_home, "run", str(plan), "--replace", "--json").stdout)
        assert replaced["replaced"] == ["second"] and replaced["kept_done"] == ["first"]
        board = Ledger(swarm_home).board()
        assert board["first"].description == "true" and board["first"].status == TaskStatus.DONE
        assert (board["second"].title, board["second"].description) == ("second, fixed", "true")
        assert board["second"].status == TaskStatus.BLOCKED, "replacing a definition does not restart a task"

        retried = _run(swarm_home, "retry", "second")
        assert retried.returncode == 0 and "fresh budget" in retried.stdout
        result = _run(swarm_home, "run", str(plan), "--wait", "--timeout", "60s", timeout=90)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Attempt 1 of 1." in _prompt(swarm_home, "second"), "numbered within the fresh budget"
        assert [e.task for e in events(swarm_home) if e.type == EventType.TASK_RETRIED] == ["second"]
    finally:
        _run(swarm_home, "down")


def test_retry_gives_a_fresh_budget_and_refuses_tasks_that_are_not_stuck(swarm_home: SwarmHome,
                                                                         tmp_path: Path) -> None:
    init_home(swarm_home)
    plan = write_plan(tmp_path / "plan.json", [
        {"id": "flaky", "title": "fails until a file exists", "max_attempts": 2,
         "description": f"test -f {tmp_path / 'fixed'}"}])
    try:
        assert _run(swarm_home, "run", str(plan), "--wait", "--timeout", "60s", timeout=90).returncode == 1
        assert Ledger(swarm_home).task("flaky").failed_attempts() == 2
        unknown = _run(swarm_home, "retry", "flaky", "nope")
        assert unknown.returncode == 2 and "no task 'nope'" in unknown.stderr and len(unknown.stderr.splitlines()) == 1
        assert Ledger(swarm_home).task("flaky").status == TaskStatus.BLOCKED, "all or none: flaky was left as it was"
        (tmp_path / "fixed").touch()
        assert _run(swarm_home, "retry", "flaky", "--json").returncode == 0
        assert Ledger(swarm_home).task("flaky").failed_attempts() == 0
        result = _run(swarm_home, "run", str(plan), "--wait", "--timeout", "60s", timeout=90)
        assert result.returncode == 0, result.stdout + result.stderr
        prompt = _prompt(swarm_home, "flaky")
        assert "Attempt 1 of 2." in prompt and "Attempt 3 of 2" not in prompt, prompt
        done = _run(swarm_home, "retry", "flaky")
        assert done.returncode == 2 and len(done.stderr.splitlines()) == 1 and "is done" in done.stderr
    finally:
        _run(swarm_home, "down")


def test_kill_hold_stops_a_worker_without_requeueing_until_retry(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home)
    release = tmp_path / "release"
    plan = write_plan(tmp_path / "plan.json", [
        {"id": "long", "title": "waits for a file", "description": f"while ! test -f {release}; do sleep 0.1; done"}])
    try:
        assert _run(swarm_home, "run", str(plan)).returncode == 0
        worker = wait_until(lambda: Ledger(swarm_home).task("long").assignee, 30, "a worker on the task")
        wait_until(lambda: Ledger(swarm_home).task("long").status == TaskStatus.IN_PROGRESS, 30, "it to start")
        held = _run(swarm_home, "kill", worker, "--hold")
        assert held.returncode == 0 and "held until `swarm retry long`" in held.stdout, held.stdout + held.stderr
        task = Ledger(swarm_home).task("long")
        assert task.status == TaskStatus.BLOCKED and task.attempts[-1].outcome == AttemptOutcome.ABANDONED
        # The supervisor goes on with other work and leaves the held task alone.
        assert _run(swarm_home, "task", "add", "other", "--id", "other", "--description", "true").returncode == 0
        wait_until(lambda: Ledger(swarm_home).task("other").status == TaskStatus.DONE, 30, "the other task done")
        task = Ledger(swarm_home).task("long")
        assert task.status == TaskStatus.BLOCKED and len(task.attempts) == 1, "held, not re-queued"
        assert task.failed_attempts() == 0, "holding spends no attempt"
        release.touch()
        assert _run(swarm_home, "retry", "long").returncode == 0
        wait_until(lambda: Ledger(swarm_home).task("long").status == TaskStatus.DONE, 30, "the released task done")
    finally:
        _run(swarm_home, "down", "--teardown")


def test_plan_check_names_every_problem_and_starts_nothing(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home)
    with swarm_home.config_file.open("a") as f:
        f.write('[profiles.ghost]\ncommand = "{python} -m swarmd.worker -- no-such-agent-cli --go"\n')
    good = write_plan(tmp_path / "good.json", [{"id": "a", "title": "a", "description": "true"}])
    bad = write_plan(tmp_path / "bad.json", [
        {"id": "a", "title": "a", "profile": "claude"}, {"id": "b", "title": "b", "profile": "ghost"},
        {"id": "c", "title": "c", "profile": "ghost"}])
    env = {"PATH": BARE_PATH}
    ok = _run(swarm_home, "plan", "check", str(good), env=env)
    assert ok.returncode == 0 and ok.stdout.strip() == f"{good}: ok (1 tasks)", ok.stdout + ok.stderr
    result = _run(swarm_home, "plan", "check", str(bad), env=env)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith("swarm: error: profile ") for line in lines), result.stderr
    assert "'claude' (used by task 'a') starts `claude`, which is not on PATH" in lines[0]
    assert "'ghost' (used by tasks 'b', 'c') starts `no-such-agent-cli`" in lines[1]
    report = json.loads(_run(swarm_home, "plan", "check", str(bad), "--json", env=env).stdout)
    assert report["ok"] is False and report["tasks"] == 3 and len(report["problems"]) == 2
    cycle = write_plan(tmp_path / "cycle.json", [{"id": "a", "title": "a", "blocked_by": ["zzz"]}])
    refused = _run(swarm_home, "plan", "check", str(cycle), "--json")
    assert refused.returncode == 2 and "no task 'zzz'" in json.loads(refused.stdout)["problems"][0]
    assert Ledger(swarm_home).board() == {} and not swarm_home.pid_file.exists(), "nothing loaded or started"


def test_a_plan_whose_profile_program_is_missing_is_refused_when_it_loads(swarm_home: SwarmHome,
                                                                          tmp_path: Path) -> None:
    init_home(swarm_home)
    plan = write_plan(tmp_path / "plan.json", [
        {"id": "ok", "title": "ok", "description": "true"}, {"id": "agent", "title": "needs claude", "profile": "claude"}])
    result = _run(swarm_home, "run", str(plan), env={"PATH": BARE_PATH})
    assert result.returncode == 2
    assert re.fullmatch(r"swarm: error: profile 'claude' \(used by task 'agent'\) starts `claude`, which is not on "
                        r"PATH: install it, or change \[profiles.claude\] in swarm.toml\n", result.stderr), result.stderr
    assert Ledger(swarm_home).board() == {} and not swarm_home.pid_file.exists(), "no task loaded, nothing started"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "claude").write_text("#!/bin/sh\nexit 0\n")
    os.chmod(fake / "claude", 0o755)
    check = _run(swarm_home, "plan", "check", str(plan), env={"PATH": f"{fake}:{BARE_PATH}"})
    assert check.returncode == 0, check.stderr

"""End to end: a real supervisor daemon, real tmux workers on the test's own socket, real mail and ledger."""

import os
import signal
import threading
from pathlib import Path


from protocol.event import EventType
from protocol.task import AttemptOutcome, Task, TaskStatus
from swarmd.config import load_config
from swarmd.supervisor.daemon import running_pid, wait_exit
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.supervisor.loop import Supervisor
from swarmd.workers.tmux import TmuxServer
from swarmd.workers.warmpanes import WARM_MARK
from conftest import run_cli
from swarmkit import first_seq, init_home, max_live, statuses, wait_until, write_plan


def touch(name: str) -> str:
    return f"mkdir -p out && echo ok > out/{name}"


def files_exist(*names: str) -> dict:
    return {"checks": [{"kind": "files_exist", "paths": [f"out/{n}" for n in names]}]}


def test_diamond_runs_in_waves_within_max_workers(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home, max_workers=2)
    plan = write_plan(tmp_path / "plan.json", [
        {"id": "a", "title": "root", "description": touch("a"), "validation": files_exist("a")},
        {"id": "b", "title": "left", "description": f"sleep 0.3; {touch('b')}", "blocked_by": ["a"]},
        {"id": "c", "title": "right", "description": f"sleep 0.3; {touch('c')}", "blocked_by": ["a"]},
        {"id": "e", "title": "side", "description": f"sleep 0.3; {touch('e')}", "blocked_by": ["a"]},
        {"id": "d", "title": "join", "description": touch("d"), "blocked_by": ["b", "c", "e"],
         "validation": files_exist("b", "c", "e", "d")},
    ])
    result = run_cli("swarm", "run", str(plan), "--home", str(swarm_home.root), "--wait", "--timeout", "90s",
                     timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(statuses(swarm_home).values()) == {TaskStatus.DONE}
    for task in "bce":
        assert first_seq(swarm_home, EventType.TASK_ASSIGNED, task) > first_seq(swarm_home, EventType.TASK_COMPLETED, "a")
        assert first_seq(swarm_home, EventType.TASK_ASSIGNED, "d") > first_seq(swarm_home, EventType.TASK_COMPLETED, task)
    assert max_live(swarm_home) == 2
    assert running_pid(swarm_home) is None, "swarm run --wait stops the supervisor it started"


def test_done_that_fails_validation_is_retried_with_the_failure_then_blocked(swarm_home: SwarmHome,
                                                                            tmp_path: Path) -> None:
    init_home(swarm_home)
    plan = write_plan(tmp_path / "plan.json", [
        {"id": "liar", "title": "claims done", "description": "echo nothing done", "max_attempts": 2,
         "validation": {"checks": [{"kind": "content_check", "path": "out/x.txt", "pattern": "^finished$"}]}},
        {"id": "after", "title": "never starts", "description": "true", "blocked_by": ["liar"]},
        {"id": "free", "title": "independent", "description": touch("free")},
    ])
    result = run_cli("swarm", "run", str(plan), "--home", str(swarm_home.root), "--wait", "--timeout", "60s",
                     timeout=90)
    assert result.returncode == 1, result.stdout + result.stderr
    board = Ledger(swarm_home).board()
    liar = board["liar"]
    assert liar.status == TaskStatus.BLOCKED
    assert [a.outcome for a in liar.attempts] == [AttemptOutcome.FAILED, AttemptOutcome.FAILED]
    assert "validation failed" in liar.attempts[0].reason and "out/x.txt" in liar.attempts[0].reason
    second_prompt = (swarm_home.prompts_dir / f"{liar.attempts[1].worker}.md").read_text()
    assert "Attempt 1 failed" in second_prompt and "out/x.txt" in second_prompt
    assert board["free"].status == TaskStatus.DONE, "the rest of the plan goes on"
    assert board["after"].status == TaskStatus.OPEN
    assert any(e.type == EventType.BLOCKER_FOUND and e.task == "liar" for e in Ledger(swarm_home).events())
    assert "liar" in result.stdout and "blocked" in result.stdout


def test_a_pane_that_dies_without_reporting_is_a_failed_attempt(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home)
    # The task's script kills its own worker wrapper: no DONE, no FAILED, just a dead pane.
    plan = write_plan(tmp_path / "plan.json", [
        {"id": "crash", "title": "dies", "description": "echo about to die; kill -KILL $PPID", "max_attempts": 1},
    ])
    result = run_cli("swarm", "run", str(plan), "--home", str(swarm_home.root), "--wait", "--timeout", "60s",
                     timeout=90)
    assert result.returncode == 1
    attempt = Ledger(swarm_home).task("crash").attempts[0]
    assert attempt.outcome == AttemptOutcome.FAILED
    assert "exited with status 137 without reporting DONE or FAILED" in attempt.reason  # 128 + SIGKILL
    assert "about to die" in attempt.reason, "the pane's last output is kept for the next attempt"


def test_a_stale_heartbeat_is_a_failed_attempt(swarm_home: SwarmHome, tmp_path: Path) -> None:
    # The wrapper beats once at start, then every 600 s: with stale_after 1 s it goes stale while the task runs.
    init_home(swarm_home, heartbeat=600, stale=1.0)
    plan = write_plan(tmp_path / "plan.json", [
        {"id": "hang", "title": "hangs", "description": "sleep 60", "max_attempts": 1},
    ])
    result = run_cli("swarm", "run", str(plan), "--home", str(swarm_home.root), "--wait", "--timeout", "60s",
                     timeout=90)
    assert result.returncode == 1
    attempt = Ledger(swarm_home).task("hang").attempts[0]
    assert "no heartbeat" in attempt.reason
    assert TmuxServer(swarm_home.tmux_socket).pane(f"t-{attempt.worker}") is None, "a hung worker is stopped"


def test_supervisor_killed_mid_run_resumes_without_running_a_task_twice(swarm_home: SwarmHome,
                                                                       tmp_path: Path) -> None:
    init_home(swarm_home, max_workers=3)
    runs = tmp_path / "runs.log"
    # Each run appends start/end lines; a task run twice at once would show two starts before an end.
    script = 'echo "start $SWARM_TASK" >> {runs}; sleep {t}; echo "end $SWARM_TASK" >> {runs}'
    tasks = [{"id": f"t{i}", "title": f"task {i}", "description": script.format(runs=runs, t=0.5 + (i % 3) * 0.3),
              "blocked_by": [f"t{i - 3}"] if i >= 3 else []} for i in range(9)]
    plan = write_plan(tmp_path / "plan.json", tasks)
    home = str(swarm_home.root)
    assert run_cli("swarm", "run", str(plan), "--home", home).returncode == 0
    pid = wait_until(lambda: running_pid(swarm_home), 15, "the supervisor")
    wait_until(lambda: runs.exists() and runs.read_text().count("start") >= 4, 60, "work under way")
    os.kill(pid, signal.SIGKILL)
    assert wait_exit(pid, 10)
    assert run_cli("swarm", "up", "--home", home).returncode == 0
    result = run_cli("swarm", "run", str(plan), "--home", home, "--wait", "--timeout", "90s", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(statuses(swarm_home).values()) == {TaskStatus.DONE}
    assert any(e.type == EventType.SUPERVISOR_RECOVERED for e in Ledger(swarm_home).events())
    running: set[str] = set()
    for line in runs.read_text().splitlines():
        kind, task = line.split()
        if kind == "start":
            assert task not in running, f"{task} ran twice at once"
            running.add(task)
        else:
            running.discard(task)
    run_cli("swarm", "down", "--home", home)


def test_teardown_leaves_no_worker_session(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home, max_workers=3)
    plan = write_plan(tmp_path / "plan.json", [
        {"id": f"s{i}", "title": "sleeps", "description": "sleep 120"} for i in range(3)])
    home = str(swarm_home.root)
    assert run_cli("swarm", "run", str(plan), "--home", home).returncode == 0
    tmux = TmuxServer(swarm_home.tmux_socket)
    wait_until(lambda: len([s for s in tmux.sessions("t-") if WARM_MARK not in s]) == 3, 30, "three worker sessions")
    assert run_cli("swarm", "down", "--home", home, "--teardown").returncode == 0
    assert tmux.sessions("t-") == []
    assert {t.status for t in Ledger(swarm_home).board().values()} == {TaskStatus.OPEN}


def test_help_requests_start_one_helper_per_task_and_it_is_reaped(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home, max_workers=3)
    answered, gate = tmp_path / "answered", tmp_path / "gate"
    os.mkfifo(gate)
    with swarm_home.config_file.open("a") as f:  # a helper that "answers" by leaving a file, and ends when released
        f.write(f'helper_profile = "helper"\n[profiles.helper]\ncommand = "touch {answered}; cat {gate}"\n')
    ask = 'agentmail send --from "$SWARM_AGENT" --to supervisor --type HELP_REQUEST --task "$SWARM_TASK" ' \
          '--field question="which API?"'
    acked = 'agentmail wait "$SWARM_AGENT" --type ACK --timeout 60 > /dev/null'
    # Both requests are handled (acknowledged) while the first helper still runs; then the worker releases it.
    plan = write_plan(tmp_path / "plan.json", [
        {"id": "asks", "title": "asks twice", "description": f"{ask}; {ask}; {acked}; {acked}; echo go > {gate}"}])
    result = run_cli("swarm", "run", str(plan), "--home", str(swarm_home.root), "--wait", "--timeout", "60s",
                     timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    assert answered.exists(), "the helper ran"
    helpers = [e for e in Ledger(swarm_home).registry().values() if e.role == "helper"]
    assert len(helpers) == 1, "two requests about one task, close together, start one helper at a time"
    assert helpers[0].status == "stopped" and helpers[0].metadata["request"]
    assert TmuxServer(swarm_home.tmux_socket).pane(f"t-{helpers[0].name}") is None, "its session is reaped"
    questions = [e for e in Ledger(swarm_home).events() if e.type == EventType.QUESTION]
    assert len(questions) == 2 and questions[0].summary == "which API?"


def test_a_pane_death_wakes_the_supervisor_before_its_tick(swarm_home: SwarmHome, tmp_path: Path) -> None:
    """With a tick of an hour, only tmux's pane-died hook (or the pane's shell) can wake the supervisor to the
    death: the test waits for the failure far less than one tick."""
    init_home(swarm_home)
    config = load_config(swarm_home.config_file).model_copy(update={"tick": 3600.0})
    supervisor = Supervisor(swarm_home, config=config)
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    Ledger(swarm_home).add_task(Task(id="crash", title="dies", description=f"cat {gate}; kill -KILL $PPID",
                                     max_attempts=1), "operator")
    thread = threading.Thread(target=supervisor.run, daemon=True)
    thread.start()
    try:
        ledger = Ledger(swarm_home)
        wait_until(lambda: ledger.task("crash").status == TaskStatus.IN_PROGRESS, 60, "the worker to start")
        with open(gate, "w") as release:
            release.write("die\n")
        wait_until(lambda: ledger.task("crash").status == TaskStatus.BLOCKED, 60, "the death to be noticed")
        assert "was killed by signal" in ledger.task("crash").attempts[-1].reason or \
            "without reporting" in ledger.task("crash").attempts[-1].reason
    finally:
        supervisor.stop()
        thread.join(30)


def test_checkpoints_past_the_limit_count_as_failures(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home)
    with swarm_home.config_file.open("a") as f:
        f.write("max_checkpoints = 2\n")
    checkpoint = 'agentmail send --from "$SWARM_AGENT" --to supervisor --type CHECKPOINT --task "$SWARM_TASK" ' \
                 '--field done=some --field remaining=more'
    plan = write_plan(tmp_path / "plan.json", [
        {"id": "forever", "title": "never finishes", "description": f"{checkpoint}; sleep 5", "max_attempts": 1}])
    result = run_cli("swarm", "run", str(plan), "--home", str(swarm_home.root), "--wait", "--timeout", "60s",
                     timeout=90)
    assert result.returncode == 1, result.stdout + result.stderr
    attempts = Ledger(swarm_home).task("forever").attempts
    assert [a.outcome for a in attempts] == [AttemptOutcome.CHECKPOINT] * 2 + [AttemptOutcome.FAILED]
    assert "checkpointed more than 2 times" in attempts[-1].reason

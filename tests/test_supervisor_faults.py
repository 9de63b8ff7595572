"""Faults under a running swarm: the supervisor SIGKILLed again and again, the tmux server killed, workers that
time out, are killed, fail, checkpoint or ask for help. Real daemon, real tmux on the test's own socket, real
mail and ledger; every wait is a condition with a deadline.

The kill campaign proves "no task runs twice at once" two ways: from the ledger (a task's attempts never
overlap) and from the workers' own record (each run appends `start`/`end` lines, O_APPEND, to one file).
"""

import json
import os
import random
import shlex
import signal
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_cli
from swarmkit import events, init_home, statuses, wait_until, write_plan

from protocol.agent import AgentStatus
from protocol.event import Event, EventType
from protocol.task import LIVE_STATUSES, AttemptOutcome, TaskStatus
from swarmd.supervisor.daemon import running_pid, wait_exit
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.workers.tmux import TmuxServer

# A run of a task, as the task itself records it. The trap records the end of a run that is hung up (its
# session killed), so a run that was stopped is not taken for one still running.
RECORDED_RUN = """\
trap 'echo "end $SWARM_TASK $SWARM_ATTEMPT hup" >> {runs}; exit 1' HUP TERM INT
echo "start $SWARM_TASK $SWARM_ATTEMPT $$" >> {runs}
{gate}sleep {seconds}
echo "end $SWARM_TASK $SWARM_ATTEMPT ok" >> {runs}
"""
# The last wave waits (up to 120 s) for the test to open its gate, so the plan cannot end before every kill.
GATE_WAIT = "n=0; while [ ! -e {gate} ] && [ $n -lt 2400 ]; do sleep 0.05; n=$((n+1)); done\n"
ON_FIRST_ATTEMPT = 'if [ "$SWARM_ATTEMPT" = 1 ]; then {then}; fi; mkdir -p out && echo ok > out/{name}'


@pytest.fixture(autouse=True)
def _no_supervisor_left(swarm_home: SwarmHome) -> Iterator[None]:
    """A test that fails half way must not leave its supervisor daemon running."""
    yield
    pid = running_pid(swarm_home)
    if pid and pid > 0:
        os.kill(pid, signal.SIGKILL)
        wait_exit(pid, 10)


def _files_exist(*names: str) -> dict:
    return {"checks": [{"kind": "files_exist", "paths": [f"out/{n}" for n in names]}]}


def _wave_plan(runs: Path, gate: Path, waves: int, width: int, rng: random.Random) -> list[dict]:
    """`waves` x `width` tasks; each task past the first wave waits on two of the wave before it, and the last
    wave's tasks wait for the file `gate` as well."""
    tasks = []
    for wave in range(waves):
        for i in range(width):
            deps = [f"w{wave - 1}t{i}", f"w{wave - 1}t{(i + 1) % width}"] if wave else []
            wait = GATE_WAIT.format(gate=shlex.quote(str(gate))) if wave == waves - 1 else ""
            script = RECORDED_RUN.format(runs=shlex.quote(str(runs)), gate=wait,
                                         seconds=round(rng.uniform(0.1, 0.4), 2))
            tasks.append({"id": f"w{wave}t{i}", "title": f"wave {wave} task {i}", "description": script,
                          "blocked_by": deps, "max_attempts": 3})
    return tasks


def _supervisor_log(home: SwarmHome) -> str:
    path = home.logs_dir / "supervisor.log"
    return path.read_text(errors="replace")[-2000:] if path.exists() else "(no supervisor log)"


def _completed(home: SwarmHome) -> int:
    return sum(t.status == TaskStatus.DONE for t in Ledger(home).board().values())


# ----- the two proofs that no task ran twice at once ------------------------------------------------------------
def ledger_overlaps(all_events: list[Event]) -> list[str]:
    """Tasks assigned again while an attempt of theirs was still live: the ledger's [assigned, end) intervals."""
    live: dict[str, bool] = {}
    found = []
    for event in all_events:
        if not event.task or "status" not in event.detail:
            continue
        status = TaskStatus(event.detail["status"])
        if event.type == EventType.TASK_ASSIGNED and live.get(event.task):
            found.append(f"{event.task} assigned at seq {event.seq} while an attempt was live")
        live[event.task] = status in LIVE_STATUSES
    return found


def recorded_overlaps(runs: Path) -> tuple[list[str], list[str], Counter]:
    """From the workers' own start/end lines: (overlaps, runs never ended, runs per task)."""
    running: dict[str, set[str]] = defaultdict(set)
    overlaps, started = [], Counter()
    for line in runs.read_text().splitlines():
        kind, task, attempt, *_ = line.split()
        if kind == "start":
            if running[task]:
                overlaps.append(f"{task} attempt {attempt} started while attempt(s) {sorted(running[task])} ran")
            running[task].add(attempt)
            started[task] += 1
        else:
            running[task].discard(attempt)
    unended = [f"{task} attempt {a}" for task, attempts in running.items() for a in attempts]
    return overlaps, unended, started


def _kill_supervisor(home: SwarmHome) -> int:
    pid = wait_until(lambda: (p := running_pid(home)) and p > 0 and p, 15, "the supervisor's pid")
    os.kill(pid, signal.SIGKILL)
    assert wait_exit(pid, 10), f"supervisor {pid} still alive after SIGKILL"
    return pid


def kill_campaign(home: SwarmHome, tmp_path: Path, *, kills: int, waves: int, width: int, max_workers: int,
                  step: int) -> dict:
    """Run a plan while SIGKILLing the supervisor `kills` times at random moments, each after up to `step` more
    tasks are done (or, now and then, while it recovers); the last wave waits behind a gate opened after the last
    kill, so every kill lands mid-plan. Check the outcome and return the numbers."""
    seed = int(os.environ.get("SWARM_FAULT_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    init_home(home, max_workers=max_workers)
    runs = tmp_path / "runs.log"
    runs.touch()
    gate = tmp_path / "gate"
    plan = write_plan(tmp_path / "plan.json", _wave_plan(runs, gate, waves, width, rng))
    total = waves * width
    before_gate = total - width
    root = str(home.root)
    began = time.monotonic()
    assert run_cli("swarm", "run", str(plan), "--home", root).returncode == 0
    killed = 0
    for _ in range(kills):
        done = _completed(home)
        if rng.random() < 0.25:  # now and then, kill it again while it recovers
            target = done
        else:
            target = min(before_gate, done + rng.randint(1, step))
        wait_until(lambda: _completed(home) >= target, 60, f"{target} tasks done (seed {seed})")
        time.sleep(rng.uniform(0, 0.3))  # the random moment of the kill is the point of the test
        _kill_supervisor(home)
        killed += 1
        up = run_cli("swarm", "up", "--home", root)
        assert up.returncode == 0, up.stdout + up.stderr
    gate.touch()
    result = run_cli("swarm", "run", str(plan), "--home", root, "--wait", "--timeout", "120s", timeout=150)
    elapsed = time.monotonic() - began
    assert result.returncode == 0, f"seed {seed}: {result.stdout}{result.stderr}"
    run_cli("swarm", "down", "--home", root)

    all_events = events(home)
    board = Ledger(home).board()
    assert set(statuses(home).values()) == {TaskStatus.DONE}, f"seed {seed}"
    completions = Counter(e.task for e in all_events if e.type == EventType.TASK_COMPLETED)
    assert set(completions) == set(board) and set(completions.values()) == {1}, f"seed {seed}: {completions}"
    assert ledger_overlaps(all_events) == [], f"seed {seed}"
    overlaps, unended, started = recorded_overlaps(runs)
    assert overlaps == [], f"seed {seed}"
    assert unended == [], f"seed {seed}: runs that never ended (or still run)"
    for task in board.values():
        last = task.attempts[-1]
        assert last.outcome == AttemptOutcome.DONE
        assert f"start {task.id} {last.number} " in runs.read_text(), f"{task.id}: the completing attempt ran"
        spent = [a for a in task.attempts if a.outcome == AttemptOutcome.FAILED]
        assert spent == [], f"seed {seed}: {task.id} spent attempts on supervisor kills: {spent}"
    assigned = [e.detail["worker"] for e in all_events if e.type == EventType.TASK_ASSIGNED]
    assert len(assigned) == len(set(assigned)), f"seed {seed}: a worker name was given to two attempts"
    recovered = Counter()
    for event in all_events:
        if event.type == EventType.SUPERVISOR_RECOVERED:
            recovered.update(adopted=len(event.detail["adopted"]), reopened=len(event.detail["reopened"]),
                             orphans_killed=len(event.detail["killed"]))
    numbers = {"seed": seed, "kills": killed, "tasks": total, "seconds": round(elapsed, 1),
               "attempts": len(assigned), "runs": sum(started.values()), **recovered,
               "overlaps": len(overlaps) + len(ledger_overlaps(all_events))}
    print(f"\nkill campaign: {numbers}")
    return numbers


def test_supervisor_sigkilled_repeatedly_through_a_50_task_plan(swarm_home: SwarmHome, tmp_path: Path) -> None:
    kill_campaign(swarm_home, tmp_path, kills=7, waves=5, width=10, max_workers=7, step=5)


@pytest.mark.soak
@pytest.mark.parametrize("round", range(6))
def test_soak_supervisor_sigkilled_many_times(swarm_home: SwarmHome, tmp_path: Path, round: int) -> None:
    """Six rounds of 80 tasks, each with a new seed and 15 kills."""
    kill_campaign(swarm_home, tmp_path, kills=15, waves=8, width=10, max_workers=8, step=2)


# ----- the tmux server killed under the supervisor ---------------------------------------------------------------
def _server_pid(socket: Path) -> int:
    return int(subprocess.run(["tmux", "-S", str(socket), "display-message", "-p", "#{pid}"], capture_output=True,
                              text=True, check=True).stdout)


def test_tmux_server_killed_under_a_running_supervisor(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home, max_workers=3)
    # A slow tick (the default is 0.5 s): the workers' own reaction to the hangup reaches the supervisor before
    # its timer notices the server is gone, and must not be taken for the tasks' failure.
    config = swarm_home.config_file.read_text()
    swarm_home.config_file.write_text(config.replace("tick = 0.1", "tick = 2"))
    # The first attempts would run for a minute; they are lost with the server and must not count as failures.
    tasks = [{"id": f"long{i}", "title": "long", "max_attempts": 1, "validation": _files_exist(f"long{i}"),
              "description": ON_FIRST_ATTEMPT.format(then="sleep 60", name=f"long{i}")} for i in range(3)]
    tasks.append({"id": "after", "title": "after", "blocked_by": ["long0"], "description": "true"})
    plan = write_plan(tmp_path / "plan.json", tasks)
    root = str(swarm_home.root)
    assert run_cli("swarm", "run", str(plan), "--home", root).returncode == 0
    supervisor = wait_until(lambda: running_pid(swarm_home), 15, "the supervisor")
    wait_until(lambda: sum(s == TaskStatus.IN_PROGRESS for s in statuses(swarm_home).values()) == 3, 30,
               "three workers running")
    old_server = _server_pid(swarm_home.tmux_socket)
    lost_workers = {t.assignee for t in Ledger(swarm_home).board().values() if t.assignee}
    wait_until(lambda: not list((swarm_home.root / "mail" / "supervisor" / "new").iterdir()), 30,
               "the supervisor to have read its mail")
    # The kill should land between two steps, as it would in life: wait for the supervisor to finish one more
    # step (it touches its heartbeat after each), then kill while it waits for its next tick (2 s away).
    beat = swarm_home.run_dir / "heartbeats" / "supervisor"
    seen = beat.stat().st_mtime_ns
    wait_until(lambda: beat.stat().st_mtime_ns > seen, 10, "the supervisor to finish a step")
    subprocess.run(["tmux", "-S", str(swarm_home.tmux_socket), "kill-server"], check=True)
    assert wait_exit(old_server, 10), "the tmux server is gone"

    result = run_cli("swarm", "run", str(plan), "--home", root, "--wait", "--timeout", "60s", timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    board = Ledger(swarm_home).board()
    for i in range(3):
        attempts = board[f"long{i}"].attempts
        assert [a.outcome for a in attempts] == [AttemptOutcome.ABANDONED, AttemptOutcome.DONE], attempts
    registry = Ledger(swarm_home).registry()
    assert {registry[w].status for w in lost_workers} == {AgentStatus.DEAD}
    feed = events(swarm_home)
    lost = [e.seq for e in feed if e.agent == "supervisor" and "tmux server" in e.summary]
    assert lost, "the feed says what happened"
    assert not any(e.type == EventType.TASK_FAILED and e.detail.get("outcome") != "abandoned" for e in feed)
    respawned = [e.task for e in feed if e.type == EventType.WORKER_SPAWNED and e.seq > lost[0]]
    assert sorted(respawned) == ["after", "long0", "long1", "long2"], "the next workers run on a new tmux server"
    assert running_pid(swarm_home) == supervisor, f"the supervisor died of it: {_supervisor_log(swarm_home)}"
    run_cli("swarm", "down", "--home", root)


# ----- worker faults ---------------------------------------------------------------------------------------------
SILENT_PROFILE = """
[profiles.script]
command = "{python} -m swarmd worker run --script"

[profiles.silent]
command = "sleep 60"
"""


def _run_to_end(home: SwarmHome, plan: Path, expect: int = 0) -> subprocess.CompletedProcess[str]:
    result = run_cli("swarm", "run", str(plan), "--home", str(home.root), "--wait", "--timeout", "60s", timeout=90)
    assert result.returncode == expect, result.stdout + result.stderr
    return result


def test_a_silent_worker_that_runs_too_long_times_out(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home)
    with open(swarm_home.config_file, "a") as config:
        config.write(SILENT_PROFILE)
    plan = write_plan(tmp_path / "plan.json", [
        {"id": "mute", "title": "never reports", "profile": "silent", "timeout": 1.5, "max_attempts": 1}])
    _run_to_end(swarm_home, plan, expect=1)
    task = Ledger(swarm_home).task("mute")
    assert task.status == TaskStatus.BLOCKED
    (attempt,) = task.attempts
    assert attempt.outcome == AttemptOutcome.FAILED and attempt.reason.startswith("TIMEOUT"), attempt
    assert (attempt.ended - attempt.started).total_seconds() >= 1.5
    assert not any(e.type == EventType.TASK_STARTED for e in events(swarm_home)), "it never sent ACCEPTED"
    assert TmuxServer(swarm_home.tmux_socket).pane(f"t-{attempt.worker}") is None, "its session is killed"


def test_swarm_kill_reopens_the_task_without_spending_an_attempt(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home)
    plan = write_plan(tmp_path / "plan.json", [
        {"id": "k", "title": "killed once", "max_attempts": 1, "validation": _files_exist("k"),
         "description": ON_FIRST_ATTEMPT.format(then="sleep 60", name="k")}])
    root = str(swarm_home.root)
    assert run_cli("swarm", "run", str(plan), "--home", root).returncode == 0
    supervisor = wait_until(lambda: running_pid(swarm_home), 15, "the supervisor")
    wait_until(lambda: statuses(swarm_home).get("k") == TaskStatus.IN_PROGRESS, 30, "k running")
    worker = Ledger(swarm_home).task("k").assignee
    killed = run_cli("swarm", "kill", worker, "--home", root)
    assert killed.returncode == 0 and "task k is open again" in killed.stdout, killed.stdout + killed.stderr
    _run_to_end(swarm_home, plan)
    task = Ledger(swarm_home).task("k")
    assert [a.outcome for a in task.attempts] == [AttemptOutcome.ABANDONED, AttemptOutcome.DONE], task.attempts
    assert TmuxServer(swarm_home.tmux_socket).pane(f"t-{worker}") is None
    assert Ledger(swarm_home).registry()[worker].status == AgentStatus.STOPPED
    assert running_pid(swarm_home) == supervisor, f"the supervisor died of it: {_supervisor_log(swarm_home)}"
    run_cli("swarm", "down", "--home", root)


def test_failed_attempt_is_retried_with_the_failure_in_the_prompt(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home)
    fail = ('agentmail send --from "$SWARM_AGENT" --to supervisor --type FAILED --task "$SWARM_TASK" '
            '--field failure=TESTS_FAIL --field reason="frobnicator overheated at step 3"; exit 1')
    plan = write_plan(tmp_path / "plan.json", [
        {"id": "f", "title": "fails once", "max_attempts": 2, "validation": _files_exist("f"),
         "description": ON_FIRST_ATTEMPT.format(then=fail, name="f")}])
    _run_to_end(swarm_home, plan)
    task = Ledger(swarm_home).task("f")
    assert [a.outcome for a in task.attempts] == [AttemptOutcome.FAILED, AttemptOutcome.DONE], task.attempts
    assert "TESTS_FAIL: frobnicator overheated at step 3" in task.attempts[0].reason
    prompt = (swarm_home.prompts_dir / f"{task.attempts[1].worker}.md").read_text()
    assert "Attempt 2 of 2" in prompt
    assert "Attempt 1 failed" in prompt and "frobnicator overheated at step 3" in prompt


def test_checkpoint_hands_over_to_a_successor_without_a_failure(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home)
    checkpoint = ('agentmail send --from "$SWARM_AGENT" --to supervisor --type CHECKPOINT --task "$SWARM_TASK" '
                  '--field done=half --field remaining=rest; exit 0')
    plan = write_plan(tmp_path / "plan.json", [
        {"id": "c", "title": "checkpoints once", "max_attempts": 1, "validation": _files_exist("c"),
         "description": ON_FIRST_ATTEMPT.format(then=checkpoint, name="c")}])
    _run_to_end(swarm_home, plan)
    task = Ledger(swarm_home).task("c")
    assert [a.outcome for a in task.attempts] == [AttemptOutcome.CHECKPOINT, AttemptOutcome.DONE], task.attempts
    assert not any(e.type == EventType.TASK_FAILED for e in events(swarm_home)), "a checkpoint is no failure"
    prompt = (swarm_home.prompts_dir / f"{task.attempts[1].worker}.md").read_text()
    assert "Attempt 1 checkpointed" in prompt and "Done: half" in prompt and "Remaining: rest" in prompt


def test_help_request_reaches_the_feed_and_is_acknowledged(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home)
    ask = ('mkdir -p out && agentmail send --from "$SWARM_AGENT" --to supervisor --type HELP_REQUEST '
           '--task "$SWARM_TASK" --field problem="two configs disagree" '
           '--field question="which port should the server use?" > out/request.id '
           '&& agentmail wait "$SWARM_AGENT" --type ACK --timeout 20 --json > out/ack.json')
    plan = write_plan(tmp_path / "plan.json", [
        {"id": "h", "title": "asks", "max_attempts": 1, "description": ask,
         "validation": _files_exist("ack.json")}])
    _run_to_end(swarm_home, plan)
    question = [e for e in events(swarm_home) if e.type == EventType.QUESTION]
    assert len(question) == 1 and question[0].task == "h", question
    assert question[0].summary == "which port should the server use?"
    assert question[0].detail["problem"] == "two configs disagree"
    ack = json.loads((tmp_path / "out" / "ack.json").read_text())
    request_id = (tmp_path / "out" / "request.id").read_text().strip()
    assert ack["type"] == "ACK" and ack["from"] == "supervisor", ack
    assert ack["body"]["message_id"] == request_id == ack["reply_to"], (ack, request_id)


def test_run_wait_on_a_plan_that_is_already_finished_returns_at_once(swarm_home: SwarmHome, tmp_path: Path) -> None:
    """After a crash the plan may have finished while nobody waited: `swarm run --wait` must see that at once."""
    init_home(swarm_home)
    plan = write_plan(tmp_path / "plan.json", [{"id": "quick", "title": "quick", "description": "true"}])
    _run_to_end(swarm_home, plan)
    root = str(swarm_home.root)
    assert run_cli("swarm", "up", "--home", root).returncode == 0  # a supervisor that has nothing left to do
    wait_until(lambda: sum(e.type == EventType.SUPERVISOR_STARTED for e in events(swarm_home)) == 2, 30,
               "the second supervisor to start")
    began = time.monotonic()
    again = run_cli("swarm", "run", str(plan), "--home", root, "--wait", "--timeout", "30s",
                    timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    assert time.monotonic() - began < 15, "it waited for the timeout instead of seeing the plan finished"
    assert "quick" in again.stdout and "done" in again.stdout
    assert run_cli("swarm", "down", "--home", root).returncode == 0


def test_supervisor_starts_while_its_lock_is_probed(swarm_home: SwarmHome) -> None:
    """`swarm status` (and `swarm up` itself) probe the supervisor lock by taking it for an instant; a supervisor
    starting at that instant must wait for it, not refuse to start."""
    init_home(swarm_home)
    root = str(swarm_home.root)
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            running_pid(swarm_home)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        for _ in range(2):
            up = run_cli("swarm", "up", "--home", root)
            assert up.returncode == 0, up.stdout + up.stderr
            _kill_supervisor(swarm_home)
    finally:
        stop.set()
        prober.join()


def test_back_to_back_workers_survive_the_tmux_server_exiting_between_them(swarm_home: SwarmHome,
                                                                          tmp_path: Path) -> None:
    """One worker at a time: each ended session is the server's last, so tmux exits just as the next worker is
    started. That start must land on a new server, not fail the task."""
    init_home(swarm_home, max_workers=1)
    tasks = [{"id": f"c{i}", "title": f"link {i}", "description": "true", "max_attempts": 1,
              "blocked_by": [f"c{i - 1}"] if i else []} for i in range(20)]
    plan = write_plan(tmp_path / "plan.json", tasks)
    _run_to_end(swarm_home, plan)
    failed = [e.summary for e in events(swarm_home) if e.type == EventType.TASK_FAILED]
    assert failed == [] and set(statuses(swarm_home).values()) == {TaskStatus.DONE}

"""What a worker reports about its own end: a failure keeps its cause, however fast it came."""

import os
from pathlib import Path

from agentmail import PostOffice
from protocol.messages import MessageType, make_message
from swarmd.home import SwarmHome
from protocol.task import TaskStatus
from swarmd.ledger.log import Ledger
from swarmd.workers.tmux import TmuxServer
from swarmd.workers.wrapper import WorkerContext, run_worker
from conftest import run_cli
from swarmkit import init_home, wait_until, write_plan


def test_a_fast_failure_keeps_what_it_printed_in_its_reason(swarm_home: SwarmHome, tmp_path: Path,
                                                            busy_cores: None) -> None:
    """tmux copies pane output into the log asynchronously: the reason once said only "exit code 3" for most
    fast failures, while the log held the line that explained them."""
    init_home(swarm_home, max_workers=4)
    ids = [f"f{i}" for i in range(8)]
    plan = write_plan(tmp_path / "plan.json", [
        {"id": i, "title": "fails at once", "description": f"echo 'cause of {i}: the disk is on fire' >&2; exit 3",
         "max_attempts": 1} for i in ids])
    result = run_cli("swarm", "run", str(plan), "--home", str(swarm_home.root), "--wait", "--timeout", "120s",
                     timeout=180)
    assert result.returncode == 1, result.stdout + result.stderr
    board = Ledger(swarm_home).board()
    for i in ids:
        reason = board[i].attempts[-1].reason
        assert f"cause of {i}: the disk is on fire" in reason and "exit code 3" in reason, reason


def test_a_command_that_cannot_start_says_why(swarm_home: SwarmHome) -> None:
    init_home(swarm_home)
    post = PostOffice(swarm_home.root, durable=False)
    post.register("w1", role="worker")
    post.send(make_message(MessageType.TASK_ASSIGN, "supervisor", "w1", {"task": "t", "title": "t", "attempt": 1}))
    context = WorkerContext(home=swarm_home, agent="w1", task="t", attempt=1, log=None, heartbeat_interval=60,
                            durable=False)
    assert run_worker(context, [str(swarm_home.root / "no-such-tool")]) == 127
    failed = [d.message for d in post.mailbox("supervisor").list() if d.message.type == MessageType.FAILED]
    assert len(failed) == 1
    assert f"cannot start '{swarm_home.root / 'no-such-tool'}': No such file or directory" in failed[0].body.reason


def _agentmail(home: SwarmHome, args: str) -> str:
    return f"agentmail {args} --home {home.root}"


def test_a_worker_whose_done_is_validated_is_told_and_may_finish_its_work(swarm_home: SwarmHome,
                                                                          tmp_path: Path) -> None:
    """A worker was killed the moment its DONE was validated: what it printed or committed after was lost."""
    init_home(swarm_home)
    script = "; ".join([
        "echo work > out.txt",
        _agentmail(swarm_home, 'send --from "$SWARM_AGENT" --to supervisor --type DONE --task polite '
                               '--field summary=finished'),
        _agentmail(swarm_home, 'wait "$SWARM_AGENT" --type SHUTDOWN --timeout 60') + " > /dev/null",
        "echo after > after.txt",
        "echo 'final words after shutdown'",
    ])
    plan = write_plan(tmp_path / "plan.json", [
        {"id": "polite", "title": "reports, then tidies up", "description": script,
         "validation": {"checks": [{"kind": "files_exist", "paths": ["out.txt"]}]}}])
    result = run_cli("swarm", "run", str(plan), "--home", str(swarm_home.root), "--wait", "--timeout", "60s",
                     timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    worker = Ledger(swarm_home).task("polite").attempts[-1].worker
    wait_until(lambda: (tmp_path / "after.txt").exists(), timeout=30, what="the work done after SHUTDOWN")
    wait_until(lambda: b"final words after shutdown" in (swarm_home.logs_dir / f"{worker}.log").read_bytes(),
               timeout=30, what="its last output in the log")


def test_a_released_worker_that_does_not_exit_is_ended_after_its_grace(swarm_home: SwarmHome,
                                                                       tmp_path: Path) -> None:
    init_home(swarm_home)
    with swarm_home.config_file.open("a") as config:
        config.write("shutdown_grace = 1.0\n")
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    script = "; ".join([
        _agentmail(swarm_home, 'send --from "$SWARM_AGENT" --to supervisor --type DONE --task stubborn'),
        f"cat {gate}",  # never returns: only the end of its session stops it
    ])
    plan = write_plan(tmp_path / "plan.json", [{"id": "stubborn", "title": "never exits", "description": script}])
    result = run_cli("swarm", "up", "--home", str(swarm_home.root))
    assert result.returncode == 0, result.stderr
    assert run_cli("swarm", "run", str(plan), "--home", str(swarm_home.root)).returncode == 0
    ledger = Ledger(swarm_home)
    wait_until(lambda: ledger.task("stubborn").status == TaskStatus.DONE, timeout=30, what="the task to be done")
    session = f"t-{ledger.task('stubborn').attempts[-1].worker}"
    wait_until(lambda: session not in TmuxServer(swarm_home.tmux_socket).panes(), timeout=30,
               what="its session to be ended after the grace period")
    assert run_cli("swarm", "down", "--home", str(swarm_home.root)).returncode == 0

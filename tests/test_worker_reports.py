"""What a worker reports about its own end: a failure keeps its cause, however fast it came."""

from pathlib import Path

from agentmail import PostOffice
from protocol.messages import MessageType, make_message
from swarmd.home import SwarmHome
from swarmd.ledger import Ledger
from swarmd.worker import WorkerContext, run_worker
from conftest import run_cli
from swarmkit import init_home, write_plan


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

"""Operating a running swarm from the CLI: status, steer, reply, logs, attach, a second `up`, hooks."""

import json
import subprocess
from pathlib import Path

from conftest import run_cli
from swarmkit import start_one_task, init_home, wait_until, write_plan

from agentmail import PostOffice
from protocol.event import EventType
from protocol.messages import MessageType
from protocol.task import TaskStatus
from swarmd.supervisor.daemon import running_pid
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.workers.tmux import TmuxServer

# A worker that waits for a line on its terminal, then writes it where the test can see it.
READER = 'echo ready; read line; echo "$line" > {out}'


def test_status_steer_nudge_reply_and_logs(swarm_home: SwarmHome, tmp_path: Path) -> None:
    out = tmp_path / "typed.txt"
    worker = start_one_task(swarm_home, tmp_path, READER.format(out=out))
    home = ["--home", str(swarm_home.root)]
    wait_until(lambda: Ledger(swarm_home).task("job").status == TaskStatus.IN_PROGRESS, 30, "ACCEPTED")

    status = json.loads(run_cli("swarm", "status", *home, "--json").stdout)
    assert status["supervisor"]["running"] and status["tasks"] == {"in_progress": 1}
    [entry] = [w for w in status["workers"] if w["name"] == worker]
    assert entry["task"] == "job" and entry["pane"] == "alive" and entry["heartbeat_age"] is not None
    assert worker in run_cli("swarm", "status", *home).stdout

    # the worker waits on its terminal until the nudge below, so it still holds its task
    assert run_cli("swarm", "reply", worker, "try again", *home).returncode == 0
    answers = [m.message for m in PostOffice(swarm_home.root).mailbox(worker).list()
               if m.message.type == MessageType.HELP_RESPONSE]
    assert answers and answers[0].body.answer == "try again" and answers[0].body.task == "job"

    steer = run_cli("swarm", "steer", worker, "use the v2 API; $(touch pwned)", "--nudge", *home)
    assert steer.returncode == 0, steer.stderr
    wait_until(lambda: out.exists() and out.read_text().strip(), 30, "the nudge to reach the pane")
    assert out.read_text().strip() == "use the v2 API; $(touch pwned)", "typed literally, never run"
    mail = PostOffice(swarm_home.root).mailbox(worker).list()
    assert [m.message.type for m in mail if m.message.type == MessageType.STEER]

    wait_until(lambda: Ledger(swarm_home).task("job").status == TaskStatus.DONE, 30, "the task to finish")
    wait_until(lambda: Ledger(swarm_home).registry()[worker].status == "stopped", 30, "the worker to stop")
    late = run_cli("swarm", "reply", worker, "too late", *home)
    assert late.returncode == 2 and "no task" in late.stderr, "a worker that has finished takes no answers"
    logs = run_cli("swarm", "logs", worker, *home)
    assert logs.returncode == 0 and "ready" in logs.stdout
    assert not (tmp_path / "pwned").exists() and not (swarm_home.root.parent / "pwned").exists()
    assert run_cli("swarm", "down", *home).returncode == 0


def test_second_up_is_refused_and_attach_targets_the_private_socket(swarm_home: SwarmHome, tmp_path: Path) -> None:
    worker = start_one_task(swarm_home, tmp_path, "sleep 60")
    home = ["--home", str(swarm_home.root)]
    again = run_cli("swarm", "up", *home)
    assert again.returncode == 2 and "already running" in again.stderr and "Traceback" not in again.stderr
    session = f"t-{worker}"
    wait_until(lambda: TmuxServer(swarm_home.tmux_socket).pane(session), 30, "the worker's session")
    from swarmd.operate import Operator

    argv = Operator(swarm_home).attach_plan(worker).argv
    assert argv == ["tmux", "-S", str(swarm_home.tmux_socket), "attach-session", "-t", f"={session}"]
    missing = run_cli("swarm", "attach", "nobody", *home)
    assert missing.returncode == 2 and "no worker named 'nobody'" in missing.stderr
    assert run_cli("swarm", "down", "--teardown", *home).returncode == 0
    assert running_pid(swarm_home) is None


def test_on_task_done_runs_after_validation_and_its_failure_is_only_logged(swarm_home: SwarmHome,
                                                                          tmp_path: Path) -> None:
    init_home(swarm_home, max_workers=2)
    record = tmp_path / "done.txt"
    with swarm_home.config_file.open("a") as f:
        f.write(f"on_task_done = 'echo \"{{task_id}} {{title}}\" >> {record}; test {{task_id}} != bad'\n")
    plan = write_plan(tmp_path / "plan.json", [
        {"id": "good", "title": "fine; $(touch pwned) `touch pwned`", "description": "true"},
        {"id": "bad", "title": "hook fails", "description": "true"},
    ])
    result = run_cli("swarm", "run", str(plan), "--home", str(swarm_home.root), "--wait", "--timeout", "60s",
                     timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    wait_until(lambda: record.exists() and len(record.read_text().splitlines()) == 2, 30, "both hooks")
    assert "good fine; $(touch pwned) `touch pwned`" in record.read_text().splitlines()
    assert not list(swarm_home.root.parent.rglob("pwned")), "a title inside double quotes is still never run"
    failures = [e for e in Ledger(swarm_home).events() if e.type == EventType.CUSTOM and "on_task_done" in e.summary]
    assert [e.task for e in failures] == ["bad"]


def test_worker_run_by_hand_registers_itself_and_reports(swarm_home: SwarmHome) -> None:
    init_home(swarm_home)
    home = ["--home", str(swarm_home.root)]
    assert run_cli("swarm", "task", "add", "by hand", "--id", "manual", *home).returncode == 0
    ok = run_cli("swarm", "worker", "run", "--agent", "me", "--task", "manual", *home, "--", "sh", "-c", "exit 0")
    assert ok.returncode == 0, ok.stderr
    failed = run_cli("swarm", "worker", "run", "--agent", "me", "--task", "manual", *home, "--", "sh", "-c", "exit 3")
    assert failed.returncode == 3
    mail = [d.message for d in PostOffice(swarm_home.root).mailbox("supervisor").list()]
    assert [m.type for m in mail] == [MessageType.ACCEPTED, MessageType.DONE, MessageType.ACCEPTED,
                                      MessageType.FAILED]
    assert "exit code 3" in mail[-1].body.reason and mail[-1].origin is not None
    assert "me" in Ledger(swarm_home).registry()
    refused = run_cli("swarm", "worker", "run", "--task", "manual", *home, "--", "true")
    assert refused.returncode == 2 and "agent name" in refused.stderr


def test_demo_finishes_and_leaves_nothing_running(tmp_path: Path) -> None:
    result = run_cli("swarm", "demo", env={"TMPDIR": str(tmp_path)}, timeout=170)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "all tasks done and validated" in result.stdout
    assert not list(tmp_path.glob("swarm-demo-*")), "the demo's home is removed"
    for socket in tmp_path.rglob("*.sock"):  # a long home path puts the socket in a private dir of TMPDIR
        alive = subprocess.run(["tmux", "-S", str(socket), "list-sessions"], capture_output=True, check=False)
        assert alive.returncode != 0, f"a tmux server still answers on {socket}"

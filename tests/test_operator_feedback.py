"""What an operator is told about a running swarm: questions waiting on an answer, answers in the feed,
workers that have ended, a live status view, and logs that end with their worker."""

import json
import subprocess
import sys
import threading
from pathlib import Path

from conftest import run_cli
from swarmkit import events, start_one_task, wait_until

from protocol.task import TaskStatus
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.workers.tmux import TmuxServer

ASKS = ('agentmail send --from "$SWARM_AGENT" --to supervisor --type HELP_REQUEST --task job '
        '--field question="which API version? v1 or v2" >/dev/null && '
        'agentmail wait "$SWARM_AGENT" --type HELP_RESPONSE --timeout 120 --json > {out}')
# Colours, a title and a cursor move, then it waits for a line on its terminal.
NOISY = r"printf '\033[31mred\033[0m text\033]0;title\007\n'; echo ready; read line; echo \"got $line\""


def status(swarm_home: SwarmHome, worker: str) -> dict:
    report = json.loads(run_cli("swarm", "status", "--home", str(swarm_home.root), "--json").stdout)
    return next((w for w in report["workers"] if w["name"] == worker), {})


def test_a_question_shows_in_status_until_answered_and_the_answer_is_in_the_feed(swarm_home: SwarmHome,
                                                                                 tmp_path: Path) -> None:
    answer = tmp_path / "answer.json"
    worker = start_one_task(swarm_home, tmp_path, ASKS.format(out=answer))
    home = ["--home", str(swarm_home.root)]
    asked = wait_until(lambda: status(swarm_home, worker).get("question"), 30, "the question in status")
    assert asked == "which API version? v1 or v2" and status(swarm_home, worker)["asked_age"] is not None
    table = run_cli("swarm", "status", *home, env={"COLUMNS": "250"}).stdout
    assert "which API version?" in table and f"waiting on an answer: {worker}" in table

    replied = run_cli("swarm", "reply", worker, "use v2\nand keep v1 working", *home)
    assert replied.returncode == 0, replied.stderr
    [recorded] = [e for e in events(swarm_home) if e.detail.get("answered") == worker]
    assert recorded.summary == f"operator answered {worker}: use v2" and recorded.task == "job"
    assert f"operator answered {worker}: use v2" in run_cli("swarm", "feed", *home).stdout
    assert status(swarm_home, worker).get("question") is None, "an answered question is not waiting any more"
    wait_until(lambda: Ledger(swarm_home).task("job").status == TaskStatus.DONE, 30, "the task to finish")
    assert json.loads(answer.read_text())["body"]["answer"] == "use v2\nand keep v1 working"


def test_steer_and_kill_of_a_worker_that_has_ended_say_so_and_exit_1(swarm_home: SwarmHome,
                                                                     tmp_path: Path) -> None:
    worker = start_one_task(swarm_home, tmp_path, "true")
    home = ["--home", str(swarm_home.root)]
    wait_until(lambda: Ledger(swarm_home).registry()[worker].status == "stopped", 30, "the worker to stop")
    for argv in (("steer", worker, "too late"), ("kill", worker)):
        result = run_cli("swarm", *argv, *home)
        assert result.returncode == 1, (argv, result.stdout, result.stderr)
        assert result.stderr.splitlines() == [f"swarm: error: {worker} has ended (stopped): nothing to {argv[0]}; "
                                              f"see `swarm logs {worker}`"]
    assert not [e for e in events(swarm_home) if "steered" in e.summary], "nothing was sent to an ended worker"


def test_logs_follow_ends_when_its_worker_does(swarm_home: SwarmHome, tmp_path: Path) -> None:
    worker = start_one_task(swarm_home, tmp_path, NOISY)
    home = ["--home", str(swarm_home.root)]
    log = swarm_home.logs_dir / f"{worker}.log"
    wait_until(lambda: log.exists() and "ready" in log.read_text(errors="replace"), 30, "the worker's first output")
    follower = subprocess.Popen([str(Path(sys.executable).parent / "swarm"), "logs", worker, "-f", *home],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        TmuxServer(swarm_home.tmux_socket).send_keys(f"t-{worker}", "go")
        out, err = follower.communicate(timeout=30)  # it must end by itself once the worker has
    finally:
        follower.kill()
    assert follower.returncode == 0 and err == "" and "got go" in out
    assert Ledger(swarm_home).task("job").status == TaskStatus.DONE
    again = run_cli("swarm", "logs", worker, "--follow", *home, timeout=30)
    assert again.returncode == 0 and "got go" in again.stdout, "following an ended worker prints and returns"


def test_logs_plain_strips_terminal_escapes(swarm_home: SwarmHome, tmp_path: Path) -> None:
    worker = start_one_task(swarm_home, tmp_path, NOISY)
    home = ["--home", str(swarm_home.root)]
    log = swarm_home.logs_dir / f"{worker}.log"
    wait_until(lambda: log.exists() and "ready" in log.read_text(errors="replace"), 30, "the worker's first output")
    raw = run_cli("swarm", "logs", worker, *home).stdout
    assert "\x1b[31mred" in raw, "without --plain the log is as the pane printed it"
    plain = run_cli("swarm", "logs", worker, "--plain", *home)
    assert plain.returncode == 0 and "red text\n" in plain.stdout and "ready" in plain.stdout
    assert "\x1b" not in plain.stdout and "\x07" not in plain.stdout and "\r" not in plain.stdout
    assert run_cli("swarm", "down", "--teardown", *home).returncode == 0


def test_status_watch_prints_lines_off_a_terminal_and_ends_with_the_supervisor(swarm_home: SwarmHome,
                                                                              tmp_path: Path) -> None:
    start_one_task(swarm_home, tmp_path, "sleep 600")
    home = ["--home", str(swarm_home.root)]
    watcher = subprocess.Popen([str(Path(sys.executable).parent / "swarm"), "status", "--watch", *home],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(watcher.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any(line.startswith("supervisor: running") for line in lines), 30, "the first view")
        assert run_cli("swarm", "feed", "publish", "hello watchers", "--agent", "op", "--type", "custom",
                       *home).returncode == 0
        wait_until(lambda: any("hello watchers" in line for line in lines), 30, "the event as a line")
        assert run_cli("swarm", "down", "--teardown", *home).returncode == 0
        assert watcher.wait(timeout=30) == 0
    finally:
        watcher.kill()
    reader.join(10)
    assert lines[-1].startswith("supervisor stopped") and watcher.stderr.read() == ""


def test_status_watch_is_a_live_view_on_a_terminal_that_ctrl_c_ends(swarm_home: SwarmHome, tmp_path: Path) -> None:
    worker = start_one_task(swarm_home, tmp_path, "sleep 600")
    tmux = TmuxServer(swarm_home.tmux_socket)
    swarm = str(Path(sys.executable).parent / "swarm")
    code = tmp_path / "code"  # its exit status, as the shell saw it (`trap :` keeps the shell past Ctrl-C)
    command = f"trap : INT; {swarm} status --watch --home {swarm_home.root}; echo $? > {code}"
    tmux.spawn("viewer", ["sh", "-c", command], env={}, cwd=tmp_path)
    wait_until(lambda: "in_progress 1" in tmux.capture("viewer"), 30, "the live view")
    assert run_cli("swarm", "task", "add", "more", "--id", "later", "--blocked-by", "job",
                   "--home", str(swarm_home.root)).returncode == 0
    wait_until(lambda: "open 1" in tmux.capture("viewer"), 30, "the view redrawn by the ledger's change")
    assert worker in tmux.capture("viewer")
    subprocess.run(["tmux", "-S", str(swarm_home.tmux_socket), "send-keys", "-t", "=viewer:", "C-c"], check=True)
    wait_until(lambda: code.exists() and code.read_text().strip(), 30, "Ctrl-C to end the view")
    assert code.read_text().strip() == "0" and "Traceback" not in tmux.capture("viewer")
    assert run_cli("swarm", "down", "--teardown", "--home", str(swarm_home.root)).returncode == 0

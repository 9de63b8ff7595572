"""Retention and `swarm clean`: old logs, prompts and read mail go, by age and size from swarm.toml; a live
worker's files and sessions never do. Real files with their mtimes set (time is passed in, never slept)."""

import json
import os
from datetime import timedelta
from pathlib import Path

from conftest import run_cli
from swarmkit import init_home, wait_until, write_plan

from agentmail import PostOffice
from protocol.agent import AgentStatus, RegistryEntry
from protocol.ids import utcnow
from protocol.messages import MessageType, make_message
from protocol.task import TaskStatus
from swarmd.config import load_config
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.supervisor.retention import DAY, live_agents, prune, prune_if_due
from swarmd.workers.tmux import TmuxServer

NOW = utcnow()


def aged(path: Path, days: float, text: str = "x\n") -> Path:
    """Write `path` and make it `days` old by NOW."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    when = NOW.timestamp() - days * DAY
    os.utime(path, (when, when))
    return path


def workers(home: SwarmHome, **statuses: AgentStatus) -> Ledger:
    ledger = Ledger(home)
    for name, status in statuses.items():
        ledger.register_agent(RegistryEntry(name=name, role="worker", status=status), "supervisor")
    return ledger


def read_mail(home: SwarmHome, agent: str, ages: list[float], size: int = 100) -> list[Path]:
    """Messages delivered to `agent` and read, the i-th `ages[i]` days old; their paths in cur/."""
    post = PostOffice(home.root)
    post.register(agent)
    for _ in ages:
        post.send(make_message(MessageType.STEER, "operator", agent, {"text": "s" * size}))
    box = post.mailbox(agent)
    paths = [Path(box.claim().path) for _ in ages]
    for path, days in zip(paths, ages):
        when = NOW.timestamp() - days * DAY
        os.utime(path, (when, when))
    return paths


def test_old_files_of_ended_workers_go_and_a_live_workers_stay(swarm_home: SwarmHome) -> None:
    init_home(swarm_home)
    ledger = workers(swarm_home, w1=AgentStatus.STOPPED, w2=AgentStatus.BUSY, w3=AgentStatus.DEAD)
    logs, prompts = swarm_home.logs_dir, swarm_home.prompts_dir
    old_ended = [aged(logs / "w1.log", 20), aged(prompts / "w1.md", 20), aged(swarm_home.run_dir / "exits" / "w1", 20)]
    kept = [aged(logs / "w2.log", 20), aged(prompts / "w2.md", 20), aged(logs / "w3.log", 5),
            aged(logs / "supervisor.log", 400)]
    os.symlink(logs / "w1.log", logs / "w9.log")
    config = load_config(swarm_home.config_file)
    assert live_agents(ledger) >= {"w2"} and not live_agents(ledger) & {"w1", "w3"}

    dry = prune(swarm_home, config, live_agents(ledger), NOW, dry_run=True)
    assert sorted(r.path for r in dry.removals) == sorted(map(str, old_ended)) and all(p.exists() for p in old_ended)
    done = prune(swarm_home, config, live_agents(ledger), NOW)
    assert {r.kind for r in done.removals} == {"log", "prompt", "exit"} and done.freed == 6
    assert not any(p.exists() for p in old_ended) and all(p.exists() for p in kept)
    assert (logs / "w9.log").is_symlink(), "a symlink is never followed nor removed"


def test_read_mail_goes_by_age_and_size_and_each_mailbox_keeps_its_newest(swarm_home: SwarmHome) -> None:
    init_home(swarm_home)
    with swarm_home.config_file.open("a") as f:
        f.write("keep_mail_days = 7\nmax_mail_mb = 0.001\n")  # about 1 KB of read mail per mailbox
    config = load_config(swarm_home.config_file)
    by_age = read_mail(swarm_home, "w1", [30, 20, 10])
    by_size = read_mail(swarm_home, "w2", [3, 2, 1, 0.5], size=200)  # about 400 bytes each
    unread = PostOffice(swarm_home.root).send(make_message(MessageType.STEER, "operator", "w1", {"text": "new"}))
    prune(swarm_home, config, set(), NOW)
    assert [p.exists() for p in by_age] == [False, False, True], "the newest read message stays, however old"
    assert [p.exists() for p in by_size] == [False, False, True, True]
    assert sum(p.stat().st_size for p in by_size if p.exists()) <= 0.001 * (1 << 20)
    assert [d.message.id for d in PostOffice(swarm_home.root).mailbox("w1").list()] == [unread.id]
    nxt = PostOffice(swarm_home.root).send(make_message(MessageType.STEER, "operator", "w2", {"text": "after"}))
    seqs = [d.seq for d in PostOffice(swarm_home.root).mailbox("w2").list() if d.message.id == nxt.id]
    assert seqs == [5], "the sequence goes on after pruning"


def test_a_log_over_max_log_mb_keeps_its_newest_half(swarm_home: SwarmHome) -> None:
    init_home(swarm_home)
    with swarm_home.config_file.open("a") as f:
        f.write("max_log_mb = 0.01\n")  # 10,485 bytes
    workers(swarm_home, w1=AgentStatus.BUSY)
    text = "".join(f"line {i:05d}\n" for i in range(3000))  # 33,000 bytes
    log = aged(swarm_home.logs_dir / "w1.log", 0, text)
    prune(swarm_home, load_config(swarm_home.config_file), {"w1"}, NOW)
    kept = log.read_text()
    assert len(kept) == 10485 // 2 and text.endswith(kept) and kept.endswith("line 02999\n")


def test_pruning_runs_at_most_once_a_minute(swarm_home: SwarmHome) -> None:
    init_home(swarm_home)
    ledger = workers(swarm_home, w1=AgentStatus.STOPPED)
    config = load_config(swarm_home.config_file)
    first = aged(swarm_home.logs_dir / "w1.log", 15)
    assert prune_if_due(swarm_home, config, ledger, NOW) is not None and not first.exists()
    second = aged(swarm_home.logs_dir / "w1.log", 15)
    assert prune_if_due(swarm_home, config, ledger, NOW + timedelta(seconds=59)) is None and second.exists()
    report = prune_if_due(swarm_home, config, ledger, NOW + timedelta(seconds=61))
    assert report is not None and [r.kind for r in report.removals] == ["log"] and not second.exists()


def test_the_supervisor_prunes_while_it_runs(swarm_home: SwarmHome) -> None:
    init_home(swarm_home)
    workers(swarm_home, w7=AgentStatus.STOPPED)
    old_log = aged(swarm_home.logs_dir / "w7.log", 30)
    [old_mail, newest] = read_mail(swarm_home, "w7", [30, 29])
    home = ["--home", str(swarm_home.root)]
    assert run_cli("swarm", "up", *home).returncode == 0
    try:
        wait_until(lambda: not old_log.exists() and not old_mail.exists(), 30, "the supervisor to prune")
        assert newest.exists()
    finally:
        assert run_cli("swarm", "down", *home).returncode == 0


def test_clean_ends_dead_sessions_and_removes_leftovers_of_ended_workers_only(swarm_home: SwarmHome,
                                                                             tmp_path: Path) -> None:
    init_home(swarm_home, max_workers=2)
    plan = write_plan(tmp_path / "plan.json", [
        {"id": "fails", "title": "fails", "description": "kill -9 $PPID", "max_attempts": 1},  # dies unreported
        {"id": "runs", "title": "runs", "description": "sleep 600"},
    ])
    home = ["--home", str(swarm_home.root)]
    assert run_cli("swarm", "run", str(plan), *home).returncode == 0
    ledger = Ledger(swarm_home)
    wait_until(lambda: ledger.task("fails").status == TaskStatus.BLOCKED, 30, "the failing task to be blocked")
    wait_until(lambda: ledger.task("runs").status == TaskStatus.IN_PROGRESS, 30, "the running task")
    failed, running = ledger.task("fails").attempts[0].worker, ledger.task("runs").assignee
    tmux = TmuxServer(swarm_home.tmux_socket)
    assert tmux.pane(f"t-{failed}").dead, "a failed worker's pane is kept for a post-mortem"
    for worker in (failed, running):  # both logs old: only the ended worker's may go
        aged(swarm_home.logs_dir / f"{worker}.log", 30, (swarm_home.logs_dir / f"{worker}.log").read_text())

    dry = run_cli("swarm", "clean", "--dry-run", "--json", *home)
    assert dry.returncode == 0, dry.stderr
    planned = {(r["kind"], Path(r["path"]).name) for r in json.loads(dry.stdout)["removed"]}
    assert planned == {("session", f"t-{failed}"), ("prompt", f"{failed}.md"), ("exit", failed),
                       ("log", f"{failed}.log")}
    assert tmux.pane(f"t-{failed}") is not None and (swarm_home.prompts_dir / f"{failed}.md").exists()

    done = run_cli("swarm", "clean", *home)
    assert done.returncode == 0 and "4 removed" in done.stdout, done.stdout + done.stderr
    assert tmux.pane(f"t-{failed}") is None and not (swarm_home.prompts_dir / f"{failed}.md").exists()
    assert not (swarm_home.logs_dir / f"{failed}.log").exists()
    assert not tmux.pane(f"t-{running}").dead and (swarm_home.prompts_dir / f"{running}.md").exists()
    assert (swarm_home.logs_dir / f"{running}.log").exists(), "a live worker's log stays, however old"
    assert ledger.task("runs").status == TaskStatus.IN_PROGRESS
    assert run_cli("swarm", "down", "--teardown", *home).returncode == 0

"""Commands that run and operate a swarm: up, down, run, status, attach, logs, steer, reply, kill, teardown,
demo, worker."""

import functools
import logging
import os
import signal
import sys
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

import click

from protocol.text import inert
from swarmd.cli import main
from swarmd.cli.common import dump_json, get_home, home_option, json_option
from swarmd.errors import NotRunning, SwarmError

if TYPE_CHECKING:
    from rich.console import Console

    from swarmd.home import SwarmHome
    from swarmd.ledger.log import Ledger


@functools.cache
def console(stderr: bool = False) -> "Console":
    """The terminal the commands print tables to (rich is imported here, only by a command that prints one)."""
    from swarmd.cli.view import terminal

    return terminal(stderr=stderr)


@main.command()
@home_option
@click.option("--foreground", is_flag=True, help="Run in this terminal instead of as a daemon.")
@click.option("--max-workers", type=click.IntRange(1, 256), default=None, help="Override max_workers.")
@json_option
def up(home: str | None, foreground: bool, max_workers: int | None, as_json: bool) -> None:
    """Start the supervisor for a home (a second `up` says it is already running)."""
    from swarmd.supervisor.daemon import start_daemon, supervisor_lock

    h = get_home(home)
    if not foreground:
        pid = start_daemon(h, max_workers)
        dump_json({"pid": pid, "home": str(h.root)}) if as_json else click.echo(f"supervisor running (pid {pid})")
        return
    from swarmd.supervisor.loop import Supervisor

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with supervisor_lock(h):
        supervisor = Supervisor(h, max_workers=max_workers)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: supervisor.stop())
        supervisor.run()


@main.command()
@home_option
@click.option("--teardown", "and_teardown", is_flag=True, help="Also end every worker session.")
@json_option
def down(home: str | None, and_teardown: bool, as_json: bool) -> None:
    """Stop the supervisor gracefully; workers keep running unless --teardown."""
    from swarmd.supervisor.daemon import stop_daemon
    from swarmd.operate import Operator

    h = get_home(home)
    try:
        pid: int | None = stop_daemon(h)
    except NotRunning:
        if not and_teardown:
            raise
        pid = None  # teardown works without a supervisor: its workers may have outlived it
    ended = Operator(h).teardown() if and_teardown else []
    if as_json:
        dump_json({"stopped": pid, "ended_sessions": ended})
        return
    said = f"supervisor stopped (pid {pid})" if pid else "no supervisor was running"
    click.echo(said + (f"; ended {len(ended)} worker sessions" if and_teardown else ""))


@main.command()
@click.argument("plan_file", metavar="PLAN", required=False, type=click.Path(dir_okay=False))
@click.option("--from-wave", "wave_file", type=click.Path(dir_okay=False),
              help="A wave JSON from OL's hero hunt (needs `ol` on PATH).")
@click.option("--beads", "use_beads", is_flag=True, help="Run the ready beads of `bd ready` (needs `bd` on PATH).")
@click.option("--bead-ids", default=None, help="Run these beads (comma-separated ids; implies --beads).")
@home_option
@click.option("--max-workers", type=click.IntRange(1, 256), default=None)
@click.option("--wait", is_flag=True, help="Run the plan to its end; exit 0 only if every task is done.")
@click.option("--timeout", default=None, help="With --wait: give up after this long (90s, 10m, 1h).")
@click.option("--replace", is_flag=True, help="Replace the definitions of tasks not yet done that the plan changed.")
@json_option
def run(plan_file: str | None, wave_file: str | None, use_beads: bool, bead_ids: str | None, home: str | None,
        max_workers: int | None, wait: bool, timeout: str | None, replace: bool, as_json: bool) -> None:
    """Load a plan (TOML or JSON, an OL wave, or beads) onto the board and start the supervisor if it is not
    running."""
    from swarmd.config import load_config
    from swarmd.supervisor.daemon import running_pid, start_daemon, stop_daemon, wait_exit
    from swarmd.home import SwarmHome, explicit_home, find_home_upward, home_to_create, init_home
    from swarmd.integrations.sources import ToolMissing, read_plan
    from swarmd.ledger.log import Ledger
    from swarmd.ledger.board import in_wave_order
    from swarmd.plans.plan import parse_duration
    from swarmd.plans.revision import compare
    from swarmd.plans.revision import replace as replace_definitions
    from swarmd.plans.runner import OPERATOR, check_profiles, load_onto_board, wait_for_plan, when_done
    from swarmd.supervisor.settings import write_settings
    from swarmd.cli.view import PlanView, ratchet_table, summary_table

    if sum((plan_file is not None, wave_file is not None, use_beads or bead_ids is not None)) != 1:
        raise SwarmError("give a PLAN file, --from-wave FILE, or --beads / --bead-ids IDS (one of them)")
    seconds = parse_duration(timeout) if timeout else None
    h = SwarmHome(explicit_home(home) or find_home_upward() or home_to_create(None))
    config = load_config(h.config_file)  # the defaults while there is no home yet
    board = Ledger(h, durable=config.durable).board() if h.exists() else {}
    try:
        plan = read_plan(plan_file, wave_file, bead_ids if bead_ids is not None else use_beads,
                         limit=max_workers or config.max_workers, known=board)
    except ToolMissing as exc:  # the planning tools' own contract: this message, exit 1
        click.echo(str(exc), err=True)
        sys.exit(1)
    check_profiles(plan, config)
    if not h.exists():  # only now: a plan that is refused leaves no home behind
        init_home(h, project=Path.cwd())
        click.echo(f"created swarm home at {h.root}", err=True)
    ledger = Ledger(h, durable=config.durable, stale_after=config.stale_after)  # as every other opener does
    revision = compare(board, plan)
    loaded = load_onto_board(ledger, plan)
    if replace:
        replace_definitions(ledger, plan, revision, OPERATOR)
    for line in revision.lines():
        click.echo(line, err=as_json)
    started = running_pid(h) is None
    if max_workers and not started:
        write_settings(h, max_workers=max_workers)  # the running supervisor takes it from its next step
    pid = start_daemon(h, max_workers) if started else running_pid(h)
    if not wait:
        result = {"added": loaded.added, "existing": loaded.existing, "completed": loaded.completed, "pid": pid,
                  "changed": revision.changed, "replaced": revision.replaced, "kept_done": revision.kept_done}
        dump_json(result) if as_json else click.echo(
            f"{len(loaded.added)} tasks added ({len(loaded.existing)} already on the board); supervisor pid {pid}")
        return
    out = console(stderr=as_json)
    try:
        with PlanView(out, loaded.ids, title="swarm run") as view:
            board = wait_for_plan(ledger, loaded.ids, timeout=seconds, on_event=view.update,
                                  supervisor_gone=when_done(lambda: wait_exit(pid, None)))
    except KeyboardInterrupt:
        stopped = started and running_pid(h) is not None and stop_daemon(h) is not None
        source = plan_file or (f"--from-wave {wave_file}" if wave_file else f"--bead-ids {','.join(loaded.ids)}")
        _interrupted(ledger, loaded.ids, source, h, supervisor_stopped=stopped)
        sys.exit(130)
    finally:
        if started and running_pid(h) is not None:
            stop_daemon(h)
    tasks = in_wave_order(board[i] for i in loaded.ids)
    if as_json:
        dump_json(tasks)
    else:
        console().print(summary_table(tasks))
        if wave_file:
            console().print(ratchet_table(tasks))
    sys.exit(0 if all(t.status == "done" for t in tasks) else 1)


def _interrupted(ledger: "Ledger", ids: list[str], plan: str, home: "SwarmHome", *, supervisor_stopped: bool) -> None:
    """After Ctrl-C on `run --wait`: say on stderr what still runs and how to go on."""
    from protocol.task import LIVE_STATUSES

    board = ledger.board()
    live = [board[i] for i in ids if board[i].status in LIVE_STATUSES]
    err = click.get_text_stream("stderr")
    err.write("interrupted: " + (f"{len(live)} tasks still have workers: "
                                 + ", ".join(f"{t.id} ({t.assignee})" for t in live) if live else "no task was running")
              + "\n")
    if supervisor_stopped:
        err.write("the supervisor this run started is stopped; its workers keep running in their sessions\n")
    err.write(f"resume with: swarm run {plan} --wait --home {home.root}    "
              f"(or end every worker: swarm down --teardown --home {home.root})\n")


@main.command()
@home_option
@click.option("--watch", "-w", is_flag=True,
              help="Keep the view up to date as the swarm changes, until Ctrl-C or the supervisor stops.")
@json_option
def status(home: str | None, watch: bool, as_json: bool) -> None:
    """The supervisor, its workers (task, state, heartbeat, last message, a question waiting on an answer)
    and tasks by status."""
    from dataclasses import asdict

    from swarmd.entry import read_config_bytes, remember_checked_config, status_lines
    from swarmd.operate import Operator

    swarm_home = get_home(home)
    before = read_config_bytes(swarm_home)
    operator = Operator(swarm_home)
    remember_checked_config(swarm_home, before)  # `swarm status` may now answer without the models
    if watch:
        if as_json:
            raise click.UsageError("--watch is for people; for programs, follow `swarm feed --follow --json`")
        from swarmd.cli.monitor import watch_status

        with suppress(KeyboardInterrupt):  # Ctrl-C is how a person ends it
            watch_status(operator, console())
        return
    report = operator.status()
    if as_json:
        dump_json({**report, "workers": [asdict(w) for w in report["workers"]]})
        return
    if not report["workers"]:
        click.echo("\n".join(status_lines(report)))
        return
    from swarmd.cli.view import status_view

    console().print(status_view(report))


@main.command()
@click.argument("worker")
@home_option
@click.option("--relay", is_flag=True, help="A worker on a host: through its agent's terminal relay, even when "
              "the host gave an ssh destination.")
@click.option("--print", "--dry-run", "dry_run", is_flag=True, help="Print what would run instead of running it.")
@json_option
def attach(worker: str, home: str | None, relay: bool, dry_run: bool, as_json: bool) -> None:
    """Attach this terminal to a worker's tmux session (detach with C-b d). A worker on a host is reached by ssh
    when the host joined with --ssh, else through the host agent's terminal relay."""
    from swarmd.operate import Operator

    operator = Operator(get_home(home))
    plan = operator.attach_plan(worker, relay=relay)
    if dry_run or as_json:
        dump_json(plan.as_dict()) if as_json else click.echo(plan.describe())
        return
    if plan.via == "tmux":
        os.execvp(plan.argv[0], plan.argv)
    from swarmd.hosts.attach import attach_remote

    sys.exit(attach_remote(operator.home, operator.config, plan))


@main.command()
@click.argument("worker")
@home_option
@click.option("--follow", "-f", is_flag=True, help="Keep printing as the worker writes, until it ends.")
@click.option("--plain", "as_plain", is_flag=True, help="Strip terminal escapes (colours, cursor moves, titles).")
def logs(worker: str, home: str | None, follow: bool, as_plain: bool) -> None:
    """Print what a worker's pane printed (kept after it ends)."""
    from swarmd.operate import Operator
    from swarmd.tail import plain, tail_file

    operator = Operator(get_home(home))
    chunks = operator.remote_logs(worker, follow)
    if chunks is None:
        path = operator.log_path(worker)
        chunks = tail_file(path, follow=follow, stop=operator.when_ended(worker) if follow else None)
    try:
        for chunk in plain(chunks) if as_plain else chunks:
            sys.stdout.write(chunk)
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass


@main.command()
@click.argument("worker")
@click.argument("text")
@home_option
@click.option("--nudge", is_flag=True, help="Also type the text into the worker's pane.")
@json_option
def steer(worker: str, text: str, home: str | None, nudge: bool, as_json: bool) -> None:
    """Send STEER mail to a worker (and, with --nudge, type it into its pane)."""
    from swarmd.operate import Operator

    message_id = Operator(get_home(home)).steer(worker, text, nudge=nudge)
    dump_json({"id": message_id}) if as_json else click.echo(message_id)


@main.command()
@click.argument("worker")
@click.argument("text")
@home_option
@json_option
def reply(worker: str, text: str, home: str | None, as_json: bool) -> None:
    """Answer a worker's HELP_REQUEST (HELP_RESPONSE mail)."""
    from swarmd.operate import Operator

    message_id = Operator(get_home(home)).reply(worker, text)
    dump_json({"id": message_id}) if as_json else click.echo(message_id)


@main.command()
@click.argument("worker")
@home_option
@click.option("--hold", is_flag=True, help="Do not re-queue its task: hold it (blocked) until `swarm retry`.")
@json_option
def kill(worker: str, home: str | None, hold: bool, as_json: bool) -> None:
    """End a worker; its task goes back to open (or, with --hold, waits for `swarm retry`)."""
    from swarmd.operate import Operator

    task = Operator(get_home(home)).kill(worker, hold=hold)
    if as_json:
        dump_json({"worker": worker, "held" if hold else "reopened": task})
    else:
        state = "held until `swarm retry " + str(task) + "`" if hold else "open again"
        click.echo(f"killed {worker}" + (f"; task {task} is {state}" if task else ""))


@main.command()
@home_option
@click.option("--keep-failed", is_flag=True, help="Keep the sessions of workers that failed, for a post-mortem.")
@json_option
def teardown(home: str | None, keep_failed: bool, as_json: bool) -> None:
    """End worker sessions (never the supervisor, never the session you run this from)."""
    from swarmd.operate import Operator

    ended = Operator(get_home(home)).teardown(keep_failed=keep_failed)
    dump_json({"ended": ended}) if as_json else click.echo(f"ended {len(ended)} worker sessions")


@main.command()
@home_option
@click.option("--older-than", "older_than", default=None,
              help="Remove ended workers' logs older than this (90s, 10m, 2h, 3d; default: keep_logs_days).")
@click.option("--dry-run", "-n", is_flag=True, help="Say what would be removed; remove nothing.")
@json_option
def clean(home: str | None, older_than: str | None, dry_run: bool, as_json: bool) -> None:
    """Remove what ended workers left behind (dead sessions, prompts, old logs) and prune old mail and logs
    by swarm.toml's retention settings. Live workers are never touched."""
    from swarmd.operate import Operator
    from swarmd.plans.plan import parse_duration
    from swarmd.supervisor.retention import DAY

    from swarmd.git.cleanup import clean_attempts

    days = parse_duration(older_than) / DAY if older_than else None
    operator = Operator(get_home(home))
    report = operator.clean(older_than_days=days, dry_run=dry_run)
    git = clean_attempts(operator.ledger, operator.config, dry_run=dry_run)
    if as_json:
        dump_json({**report.as_dict(), "git": [vars(g) for g in git]})
        return
    verb = "would remove" if dry_run else "removed"
    for removal in report.removals:
        click.echo(inert(f"{verb} {removal.kind} {removal.path} ({removal.reason})"))
    for g in git:
        click.echo(inert(f"kept branch {g.path} ({g.reason})" if g.kind == "kept" else
                         f"{verb} {g.kind} {g.path} ({g.reason})"))
    click.echo(f"{len(report.removals)} {verb}; {report.freed / (1 << 20):.1f} MiB "
               f"{'would be ' if dry_run else ''}freed")


@main.command()
@click.option("--max-workers", type=click.IntRange(1, 16), default=3)
@click.option("--keep", is_flag=True, help="Keep the demo's home directory afterwards.")
def demo(max_workers: int, keep: bool) -> None:
    """Run a ready-made 8-task plan in 3 waves with script workers, live."""
    from swarmd.cli.demo import run_demo

    sys.exit(run_demo(console(), max_workers=max_workers, keep=keep))


@main.group()
def worker() -> None:
    """Run a command as a swarm worker."""


@worker.command("run", context_settings={"ignore_unknown_options": True})
@home_option
@click.option("--agent", default=None, help="Worker name (default: $SWARM_AGENT).")
@click.option("--task", "task_id", default=None, help="Task id (default: $SWARM_TASK).")
@click.option("--script", is_flag=True, help="Run the task's description as a shell script.")
@click.option("--prompt-stdin", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Give COMMAND this file (its prompt) on stdin, never on its command line.")
@click.option("--heartbeat", type=float, default=None, help="Seconds between heartbeats (default: swarm.toml).")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def worker_run(home: str | None, agent: str | None, task_id: str | None, script: bool, prompt_stdin: Path | None,
               heartbeat: float | None, command: tuple[str, ...]) -> None:
    """Run COMMAND as the worker of a task: ACCEPTED, heartbeats, then DONE or FAILED by its exit code.

    Example: swarm worker run --task t1 --prompt-stdin prompt.md -- claude -p
    """
    from swarmd.workers.wrapper import WorkerContext, check_usage, run_worker

    check_usage(script, list(command), prompt_stdin)
    ctx = WorkerContext.from_env(home, agent, task_id, heartbeat)
    sys.exit(run_worker(ctx, None if script else list(command), prompt_stdin))

"""`swarm demo`: a throw-away swarm that runs an 8-task plan in 3 waves with script workers.

One task fails its first attempt and passes its retry; another claims DONE on its first attempt with
work that fails validation, and its retry passes. Nothing is left behind: the home is deleted and the
private tmux server killed.
"""

import shutil
import signal
import tempfile
import threading
from pathlib import Path

from rich.console import Console

from protocol.task import Check, Task, TaskStatus, ValidationSpec
from swarmd.home import SwarmHome, init_home
from swarmd.plans.plan import Plan
from swarmd.plans.runner import load_onto_board, wait_for_plan, when_done
from swarmd.supervisor.loop import Supervisor
from swarmd.cli.view import PlanView, summary_table, task_table

REPORT = 'agentmail send --from "$SWARM_AGENT" --to supervisor --type PROGRESS --task "$SWARM_TASK" --field step={step}'


def _script(*lines: str) -> str:
    return "set -e\n" + "\n".join(lines) + "\n"


def _write(name: str, content: str, step: str = "writing") -> str:
    return _script(REPORT.format(step=step), f"mkdir -p out && printf '%s\\n' {content!r} > out/{name}")


def _task(id: str, title: str, script: str, *, after: list[str] = (), checks: list[Check] = ()) -> Task:  # type: ignore[assignment]
    return Task(id=id, title=title, description=script, blocked_by=list(after),
                validation=ValidationSpec(checks=list(checks)) if checks else None)


def demo_plan() -> Plan:
    exists = lambda *paths: Check(kind="files_exist", paths=[f"out/{p}" for p in paths])  # noqa: E731
    return Plan(tasks=[
        _task("schema", "Design the schema", _write("schema.sql", "create table notes (id int, body text);"),
              checks=[exists("schema.sql")]),
        _task("fixtures", "Write test fixtures", _write("fixtures.json", '{"notes": [1, 2, 3]}'),
              checks=[exists("fixtures.json")]),
        _task("outline", "Outline the docs", _write("outline.md", "# Notes service"), checks=[exists("outline.md")]),
        _task("api", "Build the API (flaky first try)", _script(
            '[ "$SWARM_ATTEMPT" -ge 2 ] || { echo "network timeout talking to the package index" >&2; exit 1; }',
            REPORT.format(step="endpoints"), "printf 'def serve(): ...\\n' > out/api.py"),
              after=["schema"], checks=[exists("api.py")]),
        _task("models", "Write the models (first DONE is wrong)", _script(
            REPORT.format(step="models"),
            'if [ "$SWARM_ATTEMPT" -ge 2 ]; then echo "class Note: ..." > out/models.py; '
            'else echo "TODO" > out/models.py; fi'),
              after=["schema", "fixtures"],
              checks=[Check(kind="content_check", path="out/models.py", pattern=r"class Note")]),
        _task("cli", "Add the CLI", _write("cli.py", "def main(): ..."), after=["fixtures"], checks=[exists("cli.py")]),
        _task("integration", "Integration tests", _script(
            REPORT.format(step="testing"), "cat out/api.py out/models.py > out/integration.txt"),
              after=["api", "models"], checks=[Check(kind="command", run="grep -q serve out/integration.txt")]),
        _task("docs", "Write the docs", _write("docs.md", "Run it with: notes serve"),
              after=["outline", "cli"], checks=[exists("docs.md")]),
    ], completed=[])


def _interrupt(signum: int, _frame: object) -> None:
    """SIGTERM and SIGHUP end the demo as Ctrl-C does: through its clean-up, never around it."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run_demo(console: Console, max_workers: int = 3, keep: bool = False) -> int:
    """Run the demo plan to the end; 0 if every task is done."""
    root = Path(tempfile.mkdtemp(prefix="swarm-demo-"))
    home = SwarmHome(root / ".swarm")
    init_home(home)
    supervisor = Supervisor(home, max_workers=max_workers)
    plan = demo_plan()
    loaded = load_onto_board(supervisor.ledger, plan)
    console.print(f"[bold]swarm demo[/]: {len(plan.tasks)} tasks, at most {max_workers} workers, in {home.root}")
    console.print(f"watch a worker live with: tmux -S {home.tmux_socket} attach -t {supervisor.config.name}-w1")
    thread = threading.Thread(target=supervisor.run, name="supervisor", daemon=True)
    thread.start()
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        with PlanView(console, loaded.ids, title="swarm demo") as view:
            board = wait_for_plan(supervisor.ledger, loaded.ids, timeout=120, supervisor_gone=when_done(thread.join),
                                  on_event=view.update)
    finally:
        supervisor.stop()
        thread.join(timeout=30)
        supervisor.tmux.kill_server()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    console.print(task_table(board.values(), title="board"))
    console.print(summary_table(board.values()))
    ok = all(t.status == TaskStatus.DONE for t in board.values())
    console.print("[green]all tasks done and validated[/]" if ok else "[red]some tasks did not finish[/]")
    return 0 if ok else 1

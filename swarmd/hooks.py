"""The `on_task_done` command: runs after a task is validated; its failure is logged, never fatal."""

import subprocess

from protocol.event import EventType
from protocol.task import Task
from swarmd.home import SwarmHome
from swarmd.ledger import Ledger
from swarmd.spawner import render_command

HOOK_TIMEOUT = 120.0


def run_task_done_hook(template: str, task: Task, home: SwarmHome, ledger: Ledger) -> None:
    command = render_command(template, {"task_id": task.id, "title": task.title, "home": str(home.root),
                                        "agent": task.assignee or ""})
    try:
        done = subprocess.run(command, shell=True, cwd=home.root.parent, capture_output=True, text=True,
                              timeout=HOOK_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        ledger.append(EventType.CUSTOM, "supervisor", task.id, summary=f"on_task_done timed out after {HOOK_TIMEOUT:g} s")
        return
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip()[-500:]
        ledger.append(EventType.CUSTOM, "supervisor", task.id,
                      summary=f"on_task_done failed (exit {done.returncode})", output=tail)


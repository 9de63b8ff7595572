"""The `on_task_done` command: runs after a task is validated; its failure is logged, never fatal.

The task's values reach the command as environment variables, and each placeholder becomes a quoted reference
to one ("${SWARM_TASK_TITLE}"): a shell never reads the value of a variable as code, so a title such as
`$(rm -rf ~)` stays text even where the template puts the placeholder inside double quotes.
"""

import os
import re
import subprocess

from protocol.event import EventType
from protocol.task import Task
from swarmd.home import SwarmHome
from swarmd.ledger import Ledger

HOOK_TIMEOUT = 120.0
_VARIABLES = {"task_id": "SWARM_TASK_ID", "title": "SWARM_TASK_TITLE", "agent": "SWARM_AGENT", "home": "SWARM_HOME"}
_PLACEHOLDER = re.compile(r"\{(" + "|".join(_VARIABLES) + r")\}")


def render_hook(template: str) -> str:
    return _PLACEHOLDER.sub(lambda m: '"${%s}"' % _VARIABLES[m.group(1)], template)


def run_task_done_hook(template: str, task: Task, home: SwarmHome, ledger: Ledger) -> None:
    values = {"task_id": task.id, "title": task.title, "agent": task.assignee or "", "home": str(home.root)}
    env = {**os.environ, **{_VARIABLES[k]: v for k, v in values.items()}}
    try:
        done = subprocess.run(render_hook(template), shell=True, cwd=home.root.parent, env=env, capture_output=True,
                              text=True, timeout=HOOK_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        ledger.append(EventType.CUSTOM, "supervisor", task.id, summary=f"on_task_done timed out after {HOOK_TIMEOUT:g} s")
        return
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip()[-500:]
        ledger.append(EventType.CUSTOM, "supervisor", task.id,
                      summary=f"on_task_done failed (exit {done.returncode})", output=tail)

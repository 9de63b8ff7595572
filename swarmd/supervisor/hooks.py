"""The `on_task_done` command: runs after a task is validated; its failure is logged, never fatal.

The task's values reach the command as environment variables, and each placeholder becomes a quoted reference
to one ("${SWARM_TASK_TITLE}"): a shell never reads the value of a variable as code, so a title such as
`$(rm -rf ~)` stays text even where the template puts the placeholder inside double quotes.
"""

import os
import re
from pathlib import Path

from protocol.event import EventType
from protocol.task import Task
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.supervisor.shell import run_shell

_VARIABLES = {"task_id": "SWARM_TASK_ID", "title": "SWARM_TASK_TITLE", "agent": "SWARM_AGENT", "home": "SWARM_HOME"}
_PLACEHOLDER = re.compile(r"\{(" + "|".join(_VARIABLES) + r")\}")


def render_hook(template: str) -> str:
    return _PLACEHOLDER.sub(lambda m: '"${%s}"' % _VARIABLES[m.group(1)], template)


def run_task_done_hook(template: str, task: Task, home: SwarmHome, ledger: Ledger, *, cwd: Path,
                       timeout: float) -> None:
    """Run the hook for `task` in `cwd` (the project; in its own process group, output to a file: see
    `supervisor.shell`) and record a failure or a timeout (seconds) in the feed. A background command it
    starts (`sleep 200 &`) neither holds it up nor outlives it; a timeout kills its whole group."""
    values = {"task_id": task.id, "title": task.title, "agent": task.assignee or "", "home": str(home.root)}
    env = {**os.environ, **{_VARIABLES[k]: v for k, v in values.items()}}
    try:
        result = run_shell(render_hook(template), cwd=cwd, env=env, timeout=timeout, tail_bytes=500)
    except OSError as exc:
        ledger.append(EventType.CUSTOM, "supervisor", task.id, summary=f"on_task_done cannot start: {exc.strerror}")
        return
    if result.timed_out:
        ledger.append(EventType.CUSTOM, "supervisor", task.id, summary=f"on_task_done timed out after {timeout:g} s "
                      "(killed)", output=result.tail.strip())
    elif result.returncode != 0:
        ledger.append(EventType.CUSTOM, "supervisor", task.id,
                      summary=f"on_task_done failed (exit {result.returncode})", output=result.tail.strip())

"""What every agent adapter shares: the worker it prepares (`WorkerSetup`), the private directory its config
lives in, and the context file its hook reads (`worker.json`)."""

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from swarmd.agents.policy import REPORTING

# The states a worker's agent reports through its hooks (as AGENT_STATE mail to the supervisor).
STATES = ("starting", "working", "idle", "needs_input", "rate_limited", "exited")
CONTEXT_FILE = "worker.json"


@dataclass(frozen=True)
class WorkerSetup:
    """One worker about to start: its swarm home, name, task, the directory it works in (the attempt's
    directory), its own agent directory (`<home>/run/agents/<worker>`, created 0700), the environment the
    spawner gives it, the task's check commands (the policy lets the agent run them), the profile's extra
    allowed command prefixes, and the interaction mode ("headless" or "interactive")."""
    home: Path
    worker: str
    task: str
    workdir: Path
    agent_dir: Path
    env: dict[str, str]
    checks: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    mode: str = "headless"
    session_id: str = ""
    resume: str = ""  # a predecessor's session to resume, if any
    extra: dict[str, str] = field(default_factory=dict)


class Agent:
    """An adapter: `prepare` writes the agent's own config into `setup.agent_dir` before launch and returns
    the environment variables that point the CLI at it (never the user's own config directory)."""

    name = "script"

    def prepare(self, setup: WorkerSetup) -> dict[str, str]:
        write_context(setup, self.name)
        return {}

    def hook_argv(self, setup: WorkerSetup) -> list[str]:
        """The command the agent's hooks run: this Python, `-m swarmd.agents.hook`, the CLI and the worker's dir."""
        return [sys.executable, "-m", "swarmd.agents.hook", self.name, str(setup.agent_dir)]


def write_context(setup: WorkerSetup, cli: str) -> None:
    """`worker.json` in the agent's directory: what the hook needs without importing the swarm (home, worker,
    task, the commands the policy allows)."""
    prefixes = [list(p) for p in REPORTING] + [a.split() for a in setup.allow if a.strip()]
    write_private(setup.agent_dir / CONTEXT_FILE, json.dumps({
        "cli": cli, "home": str(setup.home), "agent": setup.worker, "task": setup.task,
        "workdir": str(setup.workdir), "prefixes": prefixes, "exact": list(setup.checks),
        "session_id": setup.session_id}, indent=1))


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` (0600, its directory 0700), replacing it whole (a temporary file, then rename)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)

"""A coordinator agent's own workers, as the Vers swarm tools drive them: started by label before they have
a task (`spawn`), handed a board task they hold (`give`), waited on, read, and torn down with the rest.

The supervisor assigns before it spawns; a coordinator works the other way round, so its tasks carry
`metadata.dispatch = "coordinator"` (the supervisor neither starts nor reopens them) and its workers are
registry entries with `metadata.crew` naming it (a restarted supervisor leaves their sessions alone). A crew
worker runs `swarmd.workers.standby` until its TASK_ASSIGN comes, then its profile's worker for that task.
"""

import shlex
import socket
import sys
import time
from contextlib import suppress
from pathlib import Path

from agentmail import PostOffice
from protocol.agent import AgentStatus, RegistryEntry
from protocol.event import EventType
from protocol.messages import MessageType, make_message
from protocol.names import validate_agent_name
from protocol.task import LIVE_STATUSES, Task
from swarmd.errors import SwarmError
from swarmd.home import project_dir
from swarmd.operate import ENDED, Operator
from swarmd.tail import plain, tail_file
from swarmd.tokens import handover_line, issue_token
from swarmd.workers.prompt import REPORTING, describe_checks, write_prompt
from swarmd.workers.spawner import Spawner

CREW_PREFIX = "worker-"  # the Vers naming: label `auth` is agent `worker-auth`
MAX_CREW = 64


class Crew:
    """The workers `coordinator` starts by hand over a swarm home (an Operator's view of it).

    Raises SwarmError (one line) for every refusal: an unknown profile, a name taken by a live agent, a
    worker without a board task, a worker that is not this coordinator's.
    """

    def __init__(self, operator: Operator, coordinator: str) -> None:
        self.operator, self.coordinator = operator, validate_agent_name(coordinator)
        self.home, self.ledger = operator.home, operator.ledger
        self.post = PostOffice(self.home.root, durable=operator.config.durable)

    def name_of(self, agent_id: str) -> str:
        """`auth` or `worker-auth` -> `worker-auth`, refused unless it is one of this coordinator's workers."""
        name = agent_id if agent_id.startswith(CREW_PREFIX) else CREW_PREFIX + agent_id
        entry = self.ledger.registry().get(validate_agent_name(name))
        if entry is None or entry.metadata.get("crew") != self.coordinator:
            raise SwarmError(f"{name} is not a worker {self.coordinator} spawned: see swarm_status")
        return name

    def spawn(self, count: int | None, labels: list[str], profile: str | None) -> list[RegistryEntry]:
        """Start `count` standing workers (default: one per label) named worker-<label> (worker-<n> past the
        labels), registered idle; each with its mailbox, token, log and tmux session on the swarm's server."""
        count = len(labels) if count is None else count
        if not 1 <= count <= MAX_CREW or len(labels) > count:
            raise SwarmError(f"count must be 1..{MAX_CREW} and at least the number of labels ({len(labels)})")
        spawner = Spawner(self.home, self.operator.config, self.operator.tmux)
        chosen = spawner.profile(profile)
        registry = self.ledger.registry()
        names = [CREW_PREFIX + label for label in labels]
        names += [f"{CREW_PREFIX}{n}" for n in range(1, MAX_CREW + 1)
                  if f"{CREW_PREFIX}{n}" not in names and f"{CREW_PREFIX}{n}" not in registry][: count - len(labels)]
        for name in names:
            validate_agent_name(name)
            if (entry := registry.get(name)) is not None and entry.status not in ENDED:
                raise SwarmError(f"{name} is already running ({entry.status}): pick another label")
        return [self._start(spawner, name, profile or self.operator.config.default_profile, chosen.workdir)
                for name in names]

    def _start(self, spawner: Spawner, name: str, profile: str, workdir: str | None) -> RegistryEntry:
        session = spawner.session_name(name)
        entry = RegistryEntry(name=name, role="worker", status=AgentStatus.IDLE, session=session,
                              host=socket.gethostname(), metadata={"crew": self.coordinator, "profile": profile,
                                                                   "label": name.removeprefix(CREW_PREFIX)})
        self.ledger.register_agent(entry, self.coordinator)
        self.ledger.heartbeat(name)
        self.post.register(name, role="worker")
        env = spawner.with_skills(name, {
            "SWARM_HOME": str(self.home.root), "SWARM_AGENT": name, "SWARM_ROLE": "worker", "SWARM_PROFILE": profile,
            "SWARM_LOG": str(spawner.log_path(name)), **spawner.profile(profile).env})
        token = handover_line(self.home, name, issue_token(self.home, name))
        base = project_dir(self.home, self.operator.config.project)
        command = (f'PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"; export PATH\n{token}\n'
                   f"exec {shlex.quote(sys.executable)} -m swarmd.workers.standby")
        pane = self.operator.tmux.spawn(session, ["sh", "-c", command], env=env,
                                        cwd=base / workdir if workdir else base, log_path=spawner.log_path(name),
                                        on_exit=spawner.on_exit)
        self.ledger.update_agent(name, self.coordinator, pid=pane.pid)
        self.ledger.append(EventType.WORKER_SPAWNED, self.coordinator, summary=f"{name} started in tmux session "
                           f"{session}, waiting for a task", worker=name, session=session, pid=pane.pid)
        return self.ledger.registry()[name]

    def give(self, agent_id: str, text: str) -> dict[str, str]:
        """Send the worker `text` as the work on the board task it holds (its prompt file and TASK_ASSIGN);
        returns {"agent", "task", "message"}. Refused if it holds no live task (assign one on the board first)."""
        name = self.name_of(agent_id)
        if not text.strip():
            raise SwarmError("the task text is empty: say what to do")
        held = [t for t in self.ledger.board().values() if t.assignee == name and t.status in LIVE_STATUSES]
        if not held:
            raise SwarmError(f"{name} holds no task: first board_update_task {{id, status: in_progress, "
                             f"assignee: {name}}}")
        task = held[0]
        prompt_file = self.home.prompts_dir / f"{name}.md"
        write_prompt(prompt_file, _prompt(task, name, text, self.home.root))
        message = self.post.send(make_message(MessageType.TASK_ASSIGN, self.coordinator, name, {
            "task": task.id, "title": task.title, "description": text, "attempt": 1, "max_attempts": 1,
            "prompt_file": str(prompt_file)}, thread=task.id))
        self.ledger.update_agent(name, self.coordinator, status=AgentStatus.BUSY, task=task.id)
        return {"agent": name, "task": task.id, "message": message.id}

    def members(self) -> list[str]:
        return sorted(n for n, e in self.ledger.registry().items() if e.metadata.get("crew") == self.coordinator)

    def wait(self, timeout: float) -> dict[str, list[str]]:
        """Block until every worker of this coordinator has ended (its pane exited or its session gone) or
        `timeout` seconds pass; ended ones are marked stopped. Returns {"ended": [...], "running": [...]}."""
        deadline = time.monotonic() + max(0.0, timeout)
        waits = {name: self.operator.when_ended(name) for name in self.members()}
        for ended in waits.values():
            ended.wait(max(0.0, deadline - time.monotonic()))
        registry = self.ledger.registry()
        for name, ended in waits.items():
            if ended.is_set() and registry[name].status not in ENDED:
                with suppress(SwarmError):
                    self.ledger.update_agent(name, self.coordinator, status=AgentStatus.STOPPED)
        return {"ended": sorted(n for n, e in waits.items() if e.is_set()),
                "running": sorted(n for n, e in waits.items() if not e.is_set())}

    def read(self, agent_id: str) -> str:
        """What the worker's pane printed, as plain text (the same as `swarm logs NAME --plain`)."""
        return "".join(plain(tail_file(self.operator.log_path(self.name_of(agent_id)))))

    def teardown(self) -> list[str]:
        """End every worker session of the swarm (`swarm teardown`): never the supervisor, never the pane this
        runs in (the coordinator's own, when it is one of the swarm's); crew workers are marked stopped."""
        ended = self.operator.teardown()
        registry = self.ledger.registry()
        for name in self.members():
            if registry[name].status not in ENDED:
                with suppress(SwarmError):
                    self.ledger.update_agent(name, self.coordinator, status=AgentStatus.STOPPED)
        return ended


def _prompt(task: Task, agent: str, text: str, home: Path) -> str:
    """What the coordinator said, with how to report on the board task it is for."""
    return "\n\n".join([f"# Task {task.id}: {task.title}", text.strip(),
                        REPORTING.format(agent=agent, home=shlex.quote(str(home)), task=task.id,
                                         checks=describe_checks(task))])

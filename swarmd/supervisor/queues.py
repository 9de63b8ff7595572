"""Delivering the prompts queued for interactive workers (STEER, replies) once each agent is idle."""

from protocol.event import EventType
from swarmd.errors import ConfigError, SwarmError
from swarmd.supervisor.state import SUPERVISOR
from swarmd.workers.panestate import PaneState, PaneWatcher, agent_screen
from swarmd.workers.promptqueue import PromptQueue

# Pane states in which an agent takes a prompt: idle, or stopped at a usage-limit notice (told to continue there).
WAITING = frozenset({PaneState.IDLE, PaneState.RATE_LIMITED})


class Queues:
    """The part of `Supervisor` that hands queued prompts to interactive agents. A mixin over the loop's state;
    its pane watchers (one per interactive worker, for the two quiet looks) are in `self.watchers`."""

    def interactive(self, worker: str) -> bool:
        """Whether `worker` runs its agent interactively (its task's profile says `mode = "interactive"`)."""
        state = self.workers.get(worker)
        task = self.ledger.board().get(state.task) if state is not None else None
        if task is None:
            return False
        try:
            return self.spawner.profile(task.profile).mode == "interactive"
        except ConfigError:  # its profile left swarm.toml since it started
            return False

    def prompt_queue(self, worker: str) -> PromptQueue:
        return PromptQueue(self.home.run_dir, worker)

    def flush_queues(self) -> None:
        """Look at each interactive worker with prompts waiting; deliver them when its pane shows it idle. A
        failed delivery leaves them queued and is tried again at a later step."""
        for name in list(self.workers):
            queue = self.prompt_queue(name)
            if not queue.path.exists() or not self.interactive(name):
                continue
            watcher = self.watcher(name)
            try:
                delivered = queue.flush(self.tmux, watcher.session, lambda: watcher.look().state in WAITING,
                                        lock_dir=self.home.run_dir / "delivery")
            except SwarmError as exc:
                self.errors.report(f"queue:{name}:{exc}", f"queued prompts for {name} not delivered yet: {exc}")
                continue
            if delivered:
                self.ledger.append(EventType.CUSTOM, SUPERVISOR, self.workers[name].task,
                                   summary=f"delivered {delivered} queued prompt(s) to {name}")

    def watcher(self, worker: str) -> PaneWatcher:
        """The pane watcher of `worker`, made at its first use; those of workers that ended are dropped."""
        for gone in set(self.watchers) - set(self.workers):
            del self.watchers[gone]
        watcher = self.watchers.get(worker)
        if watcher is None:
            task = self.ledger.board().get(self.workers[worker].task)
            screen = agent_screen(self.spawner.profile(task.profile if task else None).command)
            watcher = self.watchers[worker] = PaneWatcher(self.tmux, self.workers[worker].session, screen)
        return watcher

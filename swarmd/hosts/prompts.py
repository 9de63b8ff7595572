"""Prompts for a host's interactive workers: their task first, then what the supervisor's side sends them (STEER,
HELP_RESPONSE), each delivered into the pane once the agent there is idle, as the supervisor does for its own
workers (`swarmd.supervisor.queues`): a look at each pane per step, one delivery in flight per worker on a small
pool (so that a worker's prompts keep their order), a failed one tried again after a backoff. The prompts wait in
the host home's queues (`swarmd.workers.promptqueue`), so a restarted host agent delivers what was left.
"""

import logging
import os
import time
from collections.abc import Callable
from typing import NamedTuple

from protocol.messages import Message, MessageType
from swarmd.errors import SwarmError
from swarmd.home import SwarmHome
from swarmd.supervisor.queues import BACKOFF, WAITING, Deliveries
from swarmd.workers.panestate import PaneWatcher, agent_screen
from swarmd.workers.promptqueue import PromptQueue
from swarmd.workers.tmux import TmuxServer

log = logging.getLogger("swarmd.hosts")

# Mail that an interactive agent (which reads no mail) is given as a prompt, and the queue's kind for it.
AS_PROMPT = {MessageType.STEER: "steer", MessageType.HELP_RESPONSE: "reply"}


class Pane(NamedTuple):
    """An interactive worker's tmux session and its agent's command (which screen patterns it draws)."""

    session: str
    command: str


class HostPrompts:
    """The prompt queues of one host's interactive workers; `step()` on the agent's work thread, `wake` called
    when a delivery ends."""

    def __init__(self, home: SwarmHome, tmux: TmuxServer, wake: Callable[[], None]) -> None:
        self.home, self.tmux = home, tmux
        self.deliveries = Deliveries(wake)
        self.watchers: dict[str, PaneWatcher] = {}

    def queue(self, worker: str) -> PromptQueue:
        return PromptQueue(self.home.run_dir, worker)

    def take(self, worker: str, message: Message) -> bool:
        """Queue `message` for an interactive worker if it is one to be typed (STEER, HELP_RESPONSE); whether it was
        (a STEER is then not delivered as mail as well: the agent reads none)."""
        kind = AS_PROMPT.get(message.type)
        text = getattr(message.body, "text", None) or getattr(message.body, "answer", None)
        if kind is None or not text:
            return False
        self.queue(worker).push(text, kind=kind, sender=message.sender)
        return message.type == MessageType.STEER

    def step(self, panes: dict[str, Pane]) -> None:
        """Take the ended deliveries; start one for each of `panes` (worker -> its pane: the live interactive
        workers) with prompts waiting whose agent looks idle. Never waits."""
        for outcome in self.deliveries.finished():
            if outcome.error is None:
                self.deliveries.failures.pop(outcome.worker, None)
                continue
            failures = self.deliveries.failures[outcome.worker] = self.deliveries.failures.get(outcome.worker, 0) + 1
            self.deliveries.next_try[outcome.worker] = time.monotonic() + BACKOFF[min(failures, len(BACKOFF)) - 1]
            log.warning("prompts for %s not delivered yet: %s", outcome.worker, outcome.error)
        self.deliveries.forget(set(panes))
        for gone in set(self.watchers) - set(panes):
            del self.watchers[gone]
        try:
            queued = set(os.listdir(self.home.run_dir / "queues"))
        except FileNotFoundError:
            return
        for name, pane in panes.items():
            if f"{name}.json" in queued and self.deliveries.ready(name, time.monotonic()):
                self._try(name, pane)

    def _try(self, name: str, pane: Pane) -> None:
        watcher = self.watchers.get(name)
        if watcher is None:
            watcher = self.watchers[name] = PaneWatcher(self.tmux, pane.session, agent_screen(pane.command))
        try:
            idle = watcher.look().state in WAITING
        except SwarmError as exc:
            log.debug("cannot look at %s's pane: %s", name, exc)
            return
        if idle:
            queue, lock_dir = self.queue(name), self.home.run_dir / "delivery"
            self.deliveries.start(name, lambda: queue.flush(self.tmux, pane.session, lambda: True, lock_dir=lock_dir,
                                                            timeout=self.deliveries.timeout,
                                                            cancel=self.deliveries.cancel))

    def stop(self) -> None:
        self.deliveries.stop()

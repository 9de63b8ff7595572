"""Delivering the prompts queued for interactive workers (STEER, replies) once each agent is idle.

A delivery waits on the pane (the composer, the text showing, the submission: up to `Deliveries.timeout` s),
so it never runs on the supervisor's step thread: the step looks at each pane (one capture), hands a delivery
to a small pool (at most one in flight per worker, so a worker's prompts keep their order), and takes the
results at a later step, woken by the delivery's end. A delivered batch is a feed event; a failed one too,
with its reason, and it is tried again after a backoff; a delivery held because a person's unsent text sits
in the composer is noted (the queue's note, shown by `swarm status`) and looked at again at the next steps.
"""

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from protocol.event import EventType
from swarmd.errors import ConfigError, SwarmError
from swarmd.supervisor.state import SUPERVISOR
from swarmd.workers.delivery import ComposerHeld
from swarmd.workers.panestate import PaneState, PaneWatcher, agent_screen
from swarmd.workers.promptqueue import PromptQueue

# Pane states in which an agent takes a prompt: idle, or stopped at a usage-limit notice (told to continue there).
WAITING = frozenset({PaneState.IDLE, PaneState.RATE_LIMITED})
BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)  # seconds before the next try after the 1st, 2nd, ... failed delivery
HELD_RECHECK = 1.0  # seconds between looks at a composer that holds a person's text


@dataclass(frozen=True)
class DeliveryOutcome:
    """How one delivery to `worker` ended: `count` prompts delivered, or `error` (a ComposerHeld: nothing was
    sent, a person's text sits in the composer; another SwarmError: it failed)."""

    worker: str
    count: int = 0
    error: SwarmError | None = None


class Deliveries:
    """The deliveries in flight, one per worker at most, on a pool of `threads`; `wake` is called when one ends.
    `timeout` (s) bounds each wait of a delivery; `stop()` ends the waits of those in flight."""

    def __init__(self, wake: Callable[[], None], *, threads: int = 2, timeout: float = 10.0) -> None:
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="deliver")
        self.wake, self.timeout = wake, timeout
        self.cancel = threading.Event()
        self.running: dict[str, Future[DeliveryOutcome]] = {}
        self.failures: dict[str, int] = {}  # worker -> failed deliveries in a row
        self.next_try: dict[str, float] = {}  # worker -> monotonic time before which it is not tried again

    def start(self, worker: str, job: Callable[[], int]) -> None:
        """Run `job` (a delivery that returns how many prompts it delivered) for `worker` on the pool."""
        def run() -> DeliveryOutcome:
            try:
                return DeliveryOutcome(worker, count=job())
            except SwarmError as exc:
                return DeliveryOutcome(worker, error=exc)

        future = self.pool.submit(run)
        self.running[worker] = future
        future.add_done_callback(lambda _: self.wake())

    def finished(self) -> list[DeliveryOutcome]:
        """The deliveries that ended since the last call (an unexpected error in one becomes its `error`)."""
        done = [name for name, future in self.running.items() if future.done()]
        outcomes = []
        for name in done:
            future = self.running.pop(name)
            error = future.exception()
            outcomes.append(future.result() if error is None else
                            DeliveryOutcome(name, error=SwarmError(f"{type(error).__name__}: {error}")))
        return outcomes

    def ready(self, worker: str, now: float) -> bool:
        """Whether a delivery to `worker` may start: none in flight, and its backoff (if any) over."""
        return worker not in self.running and now >= self.next_try.get(worker, 0.0)

    def forget(self, live: set[str]) -> None:
        """Drop the failure counts and backoffs of workers not in `live` (those that ended)."""
        for table in (self.failures, self.next_try):
            for name in set(table) - live:
                del table[name]

    def stop(self) -> None:
        """End the waits of the deliveries in flight (each then fails as cancelled) and start no more."""
        self.cancel.set()
        self.pool.shutdown(wait=False, cancel_futures=True)


class Queues:
    """The part of `Supervisor` that hands queued prompts to interactive agents. A mixin over the loop's state;
    its pane watchers (one per interactive worker, for the two quiet looks) are in `self.watchers`, its
    deliveries in flight in `self.deliveries`."""

    def interactive(self, worker: str) -> bool:
        """Whether `worker` runs its agent interactively in a pane of this machine (its task's profile says
        `mode = "interactive"`): a worker on a host has its pane, its looks and its prompts there
        (`swarmd.hosts.prompts`)."""
        state = self.workers.get(worker)
        task = self.ledger.board().get(state.task) if state is not None and not state.host else None
        if task is None:
            return False
        try:
            return self.spawner.profile(task.profile).mode == "interactive"
        except ConfigError:  # its profile left swarm.toml since it started
            return False

    def queued_workers(self) -> list[str]:
        """This supervisor's interactive workers with prompts waiting, from one listing of the queues directory
        (a step must not cost a file lock object per worker)."""
        try:
            files = set(os.listdir(self.home.run_dir / "queues"))
        except FileNotFoundError:
            return []
        return [name for name in list(self.workers) if f"{name}.json" in files and self.interactive(name)]

    def prompt_queue(self, worker: str) -> PromptQueue:
        return PromptQueue(self.home.run_dir, worker)

    def flush_queues(self) -> None:
        """Take the results of the deliveries that ended; then start one for each interactive worker with
        prompts waiting whose pane shows it idle (none in flight for it, its backoff over). Never waits."""
        for outcome in self.deliveries.finished():
            self.delivery_ended(outcome)
        self.deliveries.forget(set(self.workers))
        for name in self.queued_workers():
            if not self.deliveries.ready(name, self.monotonic()):
                continue
            queue = self.prompt_queue(name)
            watcher = self.watcher(name)
            try:
                idle = watcher.look().state in WAITING
            except SwarmError as exc:
                self.errors.report(f"queue:{name}:{exc}", f"cannot look at {name}'s pane: {exc}")
                continue
            if idle:
                self.deliveries.start(name, lambda q=queue, s=watcher.session: q.flush(
                    self.tmux, s, lambda: True, lock_dir=self.home.run_dir / "delivery",
                    timeout=self.deliveries.timeout, cancel=self.deliveries.cancel))

    def delivery_ended(self, outcome: DeliveryOutcome) -> None:
        """Record how a delivery ended: the feed says what was delivered or why not; a failure sets the worker's
        backoff, a held delivery its next look; the queue's note says why prompts still wait."""
        name, deliveries = outcome.worker, self.deliveries
        queue, worker = self.prompt_queue(name), self.workers.get(name)
        task = worker.task if worker is not None else None
        if outcome.error is None:
            deliveries.failures.pop(name, None)
            queue.set_note(None)
            if outcome.count:
                self.ledger.append(EventType.CUSTOM, SUPERVISOR, task,
                                   summary=f"delivered {outcome.count} queued prompt(s) to {name}")
            return
        if isinstance(outcome.error, ComposerHeld):
            deliveries.next_try[name] = self.monotonic() + HELD_RECHECK
            note = f"held: {outcome.error}"
            if queue.note() != note:  # said once while it holds
                queue.set_note(note)
                self.ledger.append(EventType.CUSTOM, SUPERVISOR, task, summary=f"queued prompts for {name} {note}")
            return
        failures = deliveries.failures[name] = deliveries.failures.get(name, 0) + 1
        wait = BACKOFF[min(failures, len(BACKOFF)) - 1]
        deliveries.next_try[name] = self.monotonic() + wait
        note = f"delivery failed ({failures} in a row): {outcome.error}; next try in {wait:g} s"
        queue.set_note(note)
        self.errors.report(f"queue:{name}:{outcome.error}", f"queued prompts for {name} not delivered yet: "
                                                            f"{outcome.error}")
        self.ledger.append(EventType.CUSTOM, SUPERVISOR, task, summary=f"queued prompts for {name}: {note}")

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

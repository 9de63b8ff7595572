"""Dispatch: ready tasks are assigned before a worker is spawned for them, at most `max_workers` at a time;
helpers are spawned on a worker's SPAWN_REQUEST."""

import logging
import socket
from typing import TYPE_CHECKING, Any

from protocol.agent import AgentStatus, RegistryEntry
from protocol.event import EventType
from protocol.ids import new_id
from protocol.messages import Message, MessageType, make_message
from protocol.task import LIVE_STATUSES, NoteKind, Task, TaskStatus
from swarmd.errors import SwarmError
from swarmd.git.worktrees import AttemptTree, git_note
from swarmd.ledger.waiting import WAITING, last_said, unoffered
from swarmd.supervisor.remote import LOCAL
from swarmd.supervisor.settings import dispatch_paused
from swarmd.supervisor.state import SUPERVISOR, WorkerState
from swarmd.workers.prompt import render_help_prompt
from swarmd.workers.spawner import Prepared
from swarmd.workers.tmux import PaneInfo
from swarmd.workers.warmpanes import WarmPane

if TYPE_CHECKING:
    from swarmd.supervisor.health import PaneLook

log = logging.getLogger("swarmd.supervisor")


class Dispatch:
    """The part of `Supervisor` that starts attempts and helpers.

    A mixin: it uses the loop's ledger, spawner and workers: it holds no state of its own.
    """

    def dispatch(self) -> None:
        """Assign ready tasks, best priority first, each to the place with the most free slots that offers its
        labels: this machine (fewer than max_workers tasks live here) or a live worker host (see
        `RemoteWorkers.place`). None while dispatch is paused."""
        if dispatch_paused(self.home):
            return
        board = self.ledger.board()
        live = sum(t.status in LIVE_STATUSES for t in board.values())
        remote = sum(bool(w.host) for w in self.workers.values())
        places = self.free_slots(self.max_workers - (live - remote) - len(self.helpers))
        self.note_unoffered(board, places)
        if not any(free > 0 for free, _ in places.values()) or self.budget_spent():
            return
        done = {t.id for t in board.values() if t.status == TaskStatus.DONE}
        ready = sorted((t for t in board.values() if t.is_ready(done)), key=lambda t: (t.priority, t.created, t.id))
        wave = []
        for task in ready:
            place = self.place(task, places)
            if place is None:
                continue
            free, labels = places[place]
            places[place] = (free - 1, labels)
            if (begun := self.begin_attempt(task, host=place)) is not None:
                wave.append(begun)
            if not any(free > 0 for free, _ in places.values()):
                break
        self.launch(wave)

    def note_unoffered(self, board: dict[str, Task], places: dict[str, tuple[int, list[str]]]) -> None:
        """Say, as a note on a ready task (so in the feed, `swarm status` and `swarm board`), that no place offers
        every label it asks for: once, and again only if what there is to say changes; and say when a place
        offers them (`swarmd.ledger.waiting`). Not before the hosts up are known (`Snapshot.fresh`)."""
        asking = [t for t in board.values() if t.labels and t.status == TaskStatus.OPEN]
        if not asking or (self.remote is not None and not self.remote.snapshot().fresh):
            return
        done = {t.id for t in board.values() if t.status == TaskStatus.DONE}
        offers = {name: labels for name, (_, labels) in places.items()}
        for task in (t for t in asking if t.is_ready(done)):
            said = last_said((n.author, n.kind.value, n.text) for n in task.notes)
            note = unoffered(task.labels, offers, LOCAL)
            if note is not None and said != (WAITING, note):
                self.ledger.add_note(task.id, NoteKind.BLOCKER, note, SUPERVISOR)
            elif note is None and said is not None and said[0] == WAITING:
                where = ", ".join(n or "this machine" for n, have in sorted(offers.items())
                                  if set(task.labels) <= set(have))
                self.ledger.add_note(task.id, NoteKind.UPDATE, f"its labels are offered now, by {where}", SUPERVISOR)

    def budget_spent(self) -> bool:
        """Whether the agents' usage (their cost_update events) has reached swarm.toml's budget_tokens or
        budget_usd; the first time, the feed says that dispatch is paused and why."""
        if self.config.budget_tokens is None and self.config.budget_usd is None:
            return False
        total = self.ledger.stats()["usage_total"]
        tokens = total.get("input_tokens", 0) + total.get("output_tokens", 0)
        spent = [f"{label} {used:g} of {limit:g}" for label, used, limit in (
            ("tokens", tokens, self.config.budget_tokens), ("USD", total.get("cost_usd", 0), self.config.budget_usd))
            if limit is not None and used >= limit]
        if spent and not self.budget_noted:
            self.budget_noted = True
            self.ledger.append(EventType.CUSTOM, SUPERVISOR, summary=f"budget spent ({', '.join(spent)}): no new "
                               "attempt starts; raise budget_tokens / budget_usd in swarm.toml to go on")
        return bool(spent)

    def begin_attempt(self, task: Task, host: str = "") -> tuple[WorkerState, Prepared] | None:
        """Assign first (the ledger says who owns the task), then prepare the worker's session (prompt, mail,
        worktree); None when that failed (recorded as a failed launch) or the attempt went to `host` by its work
        queue. `launch` then starts the local sessions of a whole wave at once."""
        for old in [w for w in self.workers.values() if w.task == task.id]:
            self._end_worker(old, AgentStatus.STOPPED)  # never two workers on one task
        worker = f"w{self._next_worker}"
        self._next_worker += 1
        attempt = len(task.attempts) + 1
        session = self.spawner.session_name(worker)
        start = f"start.{worker}.{new_id()}" if host else ""  # the fencing token its host's events echo
        self.ledger.assign(task.id, RegistryEntry(name=worker, role="worker", status=AgentStatus.STARTING,
                                                  session=session, task=task.id, host=host or socket.gethostname(),
                                                  metadata=self.remote_metadata(host, start)), SUPERVISOR,
                           summary=f"{task.id} assigned to {worker} (attempt {attempt})", attempt=attempt)
        self.post.register(worker, role="worker")
        state = WorkerState(name=worker, task=task.id, attempt=attempt, session=session, started_at=self.monotonic(),
                            host=host, start=start)
        self.workers[worker] = state
        if host:
            self.start_remote(task, state)
            return None
        self.post.send(make_message(MessageType.TASK_ASSIGN, SUPERVISOR, worker, {
            "task": task.id, "title": task.title, "description": task.description, "attempt": attempt,
            "max_attempts": self.max_attempts(task), "prompt_file": str(self.home.prompts_dir / f"{worker}.md"),
        }, thread=task.id))
        try:
            tree = self.isolate(task, worker, attempt)
            prepared = self.spawner.prepare(task, worker=worker, attempt=attempt,
                                            max_attempts=self.max_attempts(task),
                                            **(self._isolated(tree, worker) if tree else {}))
        except SwarmError as exc:
            self._launch_failed(self.ledger.task(task.id), state, str(exc))
            return None
        return state, prepared

    def launch(self, begun: list[tuple[WorkerState, Prepared]]) -> None:
        """Start the workers of attempts begun (`begin_attempt`), with as few tmux invocations as can be: in a
        ready pane of the pool while it has one (`swarmd.workers.warmpanes`), else in a new session (which
        leaves its pane to the pool when its worker exits 0)."""
        if not begun:
            return
        pool, fresh = self.warm_panes, []
        taken: list[tuple[WorkerState, Prepared, WarmPane]] = []
        for state, prepared in begun:
            pane = pool.take() if pool is not None and prepared.order is not None else None
            if pane is not None:
                taken.append((state, prepared, pane))
            else:
                fresh.append((state, prepared))
        if taken and pool is not None:
            started = pool.start([(pane, p.session, p.log_path, p.order) for _, p, pane in taken])
            for (state, prepared, _), pane in zip(taken, started):
                if isinstance(pane, SwarmError):
                    log.warning("%s: a ready pane failed (%s); starting a new session", state.name, pane)
                    fresh.append((state, prepared))
                else:
                    self._launched(state, pane, how="a ready tmux session, now")
        self._launch_fresh(fresh)

    def _launch_fresh(self, begun: list[tuple[WorkerState, Prepared]]) -> None:
        specs = []
        for state, prepared in begun:
            try:
                specs.append((state, prepared.fresh()))
            except OSError as exc:  # the token's handover file
                self._launch_failed(self.ledger.task(state.task), state, f"cannot hand over its token: {exc}")
        panes = self.tmux.spawn_many([spec for _, spec in specs])
        if self.warm_panes is not None:
            self.warm_panes.expect([pane.session for pane in panes if not isinstance(pane, SwarmError)])
        for (state, _), pane in zip(specs, panes):
            self._launched(state, pane)

    def _launched(self, state: WorkerState, pane: PaneInfo | SwarmError, how: str = "tmux session") -> None:
        """Record that `state`'s worker started in `pane` (its pid), or that it could not (the error)."""
        if isinstance(pane, SwarmError):
            self._launch_failed(self.ledger.task(state.task), state, str(pane))
            return
        state.started_at = self.monotonic()
        self.ledger.update_agent(state.name, SUPERVISOR, pid=pane.pid)
        self.ledger.append(EventType.WORKER_SPAWNED, SUPERVISOR, state.task, summary=f"{state.name} started in {how} "
                           f"{pane.session}", worker=state.name, session=pane.session, pid=pane.pid,
                           attempt=state.attempt)

    def _isolated(self, tree: AttemptTree, worker: str) -> dict[str, Any]:
        """How a worker in a worktree is spawned: where, with what environment, told what about its branch."""
        return {"workdir": tree.workdir, "env": self.worker_env(tree, worker), "git_note": git_note(tree)}

    def _spawn_helper(self, msg: Message) -> None:
        """One helper at a time per task, counted against max_workers; a replayed request starts none."""
        task = self.ledger.task(msg.task or "")
        registry = self.ledger.registry()
        if msg.id in {e.metadata.get("request") for e in registry.values()} or task.id in self.helpers.values():
            return
        if len(self.helpers) + sum(t.status in LIVE_STATUSES for t in self.ledger.board().values()) >= self.max_workers:
            self.ledger.append(EventType.CUSTOM, SUPERVISOR, task.id, summary="no free worker slot for a helper: "
                               f"answer with `swarm reply {msg.sender} TEXT`")
            return
        helper = f"h{self._next_worker}"
        self._next_worker += 1
        self.ledger.register_agent(RegistryEntry(name=helper, role="helper", status=AgentStatus.STARTING,
                                                 task=task.id, session=self.spawner.session_name(helper),
                                                 metadata={"request": msg.id}), SUPERVISOR)
        self.post.register(helper, role="helper")
        self.helpers[helper] = task.id
        prompt = render_help_prompt(task, msg.body, helper=helper, asker=msg.sender)
        try:
            tree = self.trees.get(task.id)  # a helper works where the worker it helps does
            self.spawner.spawn(task, worker=helper, attempt=1, role="helper", prompt=prompt,
                               workdir=tree.workdir if tree else None)
        except SwarmError as exc:
            self.ledger.append(EventType.CUSTOM, SUPERVISOR, task.id, summary=f"could not start helper: {exc}")

    def reap_helpers(self, look: "PaneLook") -> None:
        """A helper whose pane has ended is done: its session goes, its slot frees up."""
        if not self.helpers:
            return
        registry = self.ledger.registry()
        for helper in list(self.helpers):
            session = self._recorded_session(registry, helper)
            pane = look.panes.get(session)
            if (look.complete and pane is None) or (pane is not None and pane.dead):
                del self.helpers[helper]
                self.tmux.kill_session(session)
                self._mark_agent(helper, AgentStatus.STOPPED)

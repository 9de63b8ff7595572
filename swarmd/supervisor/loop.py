"""The supervisor: assigns ready tasks to tmux workers in waves and reacts to their mail and their panes.

One thread does all the work (`step`); mail arrival, ledger changes and finished validations only wake it.
All state worth keeping is in the ledger, so a restarted supervisor rebuilds itself from there.
"""

import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from agentmail import Delivered, PostOffice
from agentmail.errors import MailError
from protocol.agent import AgentStatus, RegistryEntry
from protocol.event import EventType
from protocol.ids import utcnow
from protocol.messages import FailureType, Message, MessageType, make_message
from protocol.task import LIVE_STATUSES, AttemptOutcome, Task, TaskStatus
from swarmd.config import Config, load_config
from swarmd.errors import ConfigError, LedgerError, SwarmError
from swarmd.home import SwarmHome, project_dir
from swarmd.supervisor.hooks import run_task_done_hook
from swarmd.integrations.planning import PlanningTools
from swarmd.ledger.log import Ledger, LedgerUnwritable, StaleTransition, clip_fields, clip_text
from swarmd.supervisor.repeats import RepeatedErrors
from swarmd.workers.prompt import render_help_prompt
from swarmd.ledger.questions import record_answer
from swarmd.supervisor.retention import prune_if_due
from swarmd.supervisor.settings import clear_settings, read_settings
from swarmd.workers.spawner import Spawner
from swarmd.workers.tmux import PaneInfo, TmuxServer
from swarmd.supervisor.shell import kill_all as kill_running_commands
from swarmd.supervisor.validation import ValidationReport, run_checks
from swarmd.watch import watch_file
from swarmd.workers.wrapper import read_tail

SUPERVISOR = "supervisor"
EXIT_STATUS_GRACE = 2.0  # seconds to wait for tmux to report a dead pane's exit status
MAIL_BATCH = 256  # messages handled in one step; the rest of a backlog waits for the step's other duties
STOP_GRACE = 10.0  # seconds a stopping supervisor gives released workers to exit (less than `swarm down` waits)
MAX_HANDLE_TRIES = 3  # steps that may fail to handle one message before it is set aside in bad/
log = logging.getLogger("swarmd.supervisor.loop")


@dataclass
class WorkerState:
    """A worker the supervisor is responsible for: one attempt at one task.

    Durations are measured on the monotonic clock (seconds): a wall clock stepped forward or back must neither
    time a worker out early nor keep it from timing out. The wall clock is for display and the ledger only.
    """

    name: str
    task: str
    attempt: int
    session: str
    started_at: float  # monotonic seconds when the attempt started
    reported: bool = False  # DONE, FAILED or CHECKPOINT received: its pane may now end
    dead_since: float | None = None  # monotonic seconds when first seen dead, before tmux had its exit status
    last_beat: datetime | None = None  # the heartbeat last seen (a file's mtime, written by the worker's clock)
    beat_seen_at: float | None = None  # monotonic seconds when that heartbeat was first seen


@dataclass
class ValidationResult:
    task: str
    worker: str
    report: ValidationReport | None
    error: str = ""  # the checks could not run at all
    refused: str = ""  # the checks passed, but a planning tool (OL's ratchet) refused the work: why


class Supervisor:
    def __init__(self, home: SwarmHome, *, config: Config | None = None, max_workers: int | None = None,
                 clock: Callable[[], datetime] = utcnow, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.home = home
        home.ensure_dirs()
        self._config_stamp = _stamp(home.config_file)
        self.config = config or load_config(home.config_file)
        self.max_workers_override = max_workers
        self.clock = clock  # wall time: for the ledger and display only
        self.monotonic = monotonic  # for every duration and deadline
        self.ledger = Ledger(home, durable=self.config.durable, stale_after=self.config.stale_after, clock=clock)
        self.post = PostOffice(home.root, durable=self.config.durable)
        self.tmux = TmuxServer(home.tmux_socket)
        self.spawner = Spawner(home, self.config, self.tmux)
        self.mailbox = self.post.register(SUPERVISOR, role="supervisor")
        self.workers: dict[str, WorkerState] = {}
        self.helpers: dict[str, str] = {}  # helper name -> the task it helps with
        self.finishing: dict[str, tuple[str, float]] = {}  # released worker -> (session, monotonic deadline)
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.results: queue.SimpleQueue[ValidationResult] = queue.SimpleQueue()
        self.checks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="validate")
        self.hooks = ThreadPoolExecutor(max_workers=2, thread_name_prefix="hook")  # never delays a validation
        self.planning = PlanningTools(self.ledger)
        self._next_worker = 1
        self._mail_tries: dict[str, int] = {}  # message id -> failed tries at handling it
        self.errors = RepeatedErrors(log)

    # ----- life cycle -------------------------------------------------------------------------------------
    @property
    def max_workers(self) -> int:
        return self.max_workers_override or read_settings(self.home).get("max_workers") or self.config.max_workers

    def max_attempts(self, task: Task) -> int:
        return task.max_attempts or self.config.max_attempts

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def run(self) -> None:
        """Recover, then serve until stopped."""
        self.recover()
        self.serve()

    def serve(self) -> None:
        """Loop until stopped: every wake-up (mail, a ledger write, a check's result) or tick runs one step."""
        arrivals = self.mailbox.on_arrival(self.wake.set)
        ledger_watch = watch_file(self.ledger.path, self.wake.set)
        pane_watch = watch_file(self.spawner.pane_died_file, self.wake.set)
        try:
            while not self.stopping.is_set():
                self.guarded_step()
                self.ledger.heartbeat(SUPERVISOR)
                self.wake.wait(self.config.tick)
                self.wake.clear()
            self._let_released_finish(STOP_GRACE)
        finally:
            arrivals.stop()
            ledger_watch.stop()
            pane_watch.stop()
            self.checks.shutdown(wait=False, cancel_futures=True)
            self.hooks.shutdown(wait=False, cancel_futures=True)
            kill_running_commands()  # a restart checks again; no check or hook outlives its supervisor
            self._mark_agent(SUPERVISOR, AgentStatus.STOPPED)
            self.ledger.append(EventType.SUPERVISOR_STOPPED, SUPERVISOR, summary="supervisor stopped",
                               workers=sorted(self.workers))

    def guarded_step(self) -> None:
        """One step; an error in it is logged and put in the feed (once while it repeats, then with a count),
        and the loop goes on: the ledger holds the state, so the next step starts from the truth again."""
        try:
            self.step()
        except Exception as exc:  # noqa: BLE001 - a daemon outlives one bad step
            text = f"{type(exc).__name__}: {exc}"
            if self.errors.report(f"step:{text}", f"supervisor step failed: {text}", exc_info=True):
                with suppress(LedgerError):
                    self.ledger.append(EventType.CUSTOM, SUPERVISOR, summary=f"supervisor error (going on): {text}")
        else:
            self.errors.clear()

    def step(self) -> None:
        self.reload_config()
        self.handle_mail()
        self.handle_validations()
        self.check_workers()
        if not self.stopping.is_set():
            self.dispatch()
        self.planning.on_step()
        prune_if_due(self.home, self.config, self.ledger, self.clock())  # old logs and mail: at most once a minute

    def reload_config(self) -> None:
        """Take up a changed swarm.toml (new profiles, limits, timeouts) before the step acts on it. One that
        cannot be used is reported once, and the settings it would replace stay in force."""
        stamp = _stamp(self.home.config_file)
        if stamp == self._config_stamp:
            return
        self._config_stamp = stamp
        try:
            config = load_config(self.home.config_file)
        except ConfigError as exc:
            self.errors.report(f"config:{exc}", f"swarm.toml changed and cannot be used: {exc}")
            self.ledger.append(EventType.CUSTOM, SUPERVISOR, summary=f"swarm.toml changed and cannot be used "
                               f"(keeping the settings in force): {exc}")
            return
        self.config = self.spawner.config = config
        self.ledger.durable, self.ledger.stale_after = config.durable, config.stale_after
        self.ledger.append(EventType.CUSTOM, SUPERVISOR, summary="swarm.toml changed: settings reloaded")

    # ----- recovery ---------------------------------------------------------------------------------------
    def recover(self) -> None:
        """Rebuild the workers from the ledger, adopt live sessions, reopen tasks whose worker is gone."""
        clear_settings(self.home)  # a `swarm run --max-workers` override lasts as long as the supervisor it was for
        board, registry = self.ledger.board(), self.ledger.registry()
        # A name may be on an attempt and not in the registry (killed between the two writes): never reuse it.
        used = set(registry) | {a.worker for t in board.values() for a in t.attempts if a.worker}
        self._next_worker = 1 + max((_worker_number(n) for n in used), default=0)
        if SUPERVISOR not in registry:
            self.ledger.register_agent(RegistryEntry(name=SUPERVISOR, role="supervisor", status=AgentStatus.BUSY,
                                                     pid=os.getpid(), host=socket.gethostname()), SUPERVISOR)
        else:
            self.ledger.update_agent(SUPERVISOR, SUPERVISOR, status=AgentStatus.BUSY, pid=os.getpid())
        panes = self.tmux.panes()
        adopted, reopened = [], []
        for task in board.values():
            if task.status not in LIVE_STATUSES:
                continue
            session = self._recorded_session(registry, task.assignee or "")
            if task.assignee and task.attempts and (session in panes or task.status == TaskStatus.VALIDATING):
                self._adopt(task, session)
                adopted.append(task.id)
            else:
                self._abandon(task, "its worker is gone (the supervisor was down)")
                reopened.append(task.id)
        self.helpers = {e.name: e.task or "" for e in registry.values() if e.role == "helper" and e.session in panes
                        and not panes[e.session].dead}
        killed = self._kill_orphans(panes, registry)
        if adopted or reopened or killed:
            self.ledger.append(EventType.SUPERVISOR_RECOVERED, SUPERVISOR, pid=os.getpid(), adopted=adopted,
                               reopened=reopened, killed=killed,
                               summary=f"supervisor recovered: adopted {len(adopted)}, reopened {len(reopened)}, "
                                       f"killed {len(killed)} orphan sessions")
        else:
            self.ledger.append(EventType.SUPERVISOR_STARTED, SUPERVISOR, pid=os.getpid(),
                               summary=f"supervisor started (pid {os.getpid()}, max {self.max_workers} workers)")

    def _adopt(self, task: Task, session: str) -> None:
        attempt = task.attempts[-1]
        ran_for = max(0.0, (self.clock() - attempt.started).total_seconds())  # as well as the wall clock can say
        state = WorkerState(name=task.assignee or "", task=task.id, attempt=attempt.number, session=session,
                            started_at=self.monotonic() - ran_for, reported=task.status == TaskStatus.VALIDATING)
        self.workers[state.name] = state
        if task.status == TaskStatus.VALIDATING:
            self._validate(task, state)  # the DONE was taken before the crash; its check result was not

    def _recorded_session(self, registry: dict[str, RegistryEntry], agent: str) -> str:
        """The session recorded for `agent` when it was started; today's name for it if none was recorded
        (a change of `name` in swarm.toml must not lose track of the workers started before it)."""
        entry = registry.get(agent)
        return entry.session if entry is not None and entry.session else self.spawner.session_name(agent)

    def _kill_orphans(self, panes: dict[str, PaneInfo], registry: dict[str, RegistryEntry]) -> list[str]:
        """Live sessions of ours (recorded for an agent, or named with today's prefix) that no task is assigned
        to must not go on working."""
        ours = {w.session for w in self.workers.values()} | {self._recorded_session(registry, h) for h in self.helpers}
        recorded = {e.session for e in registry.values() if e.session and e.role != "supervisor"}
        prefix = f"{self.config.name}-"
        orphans = [s for s, p in panes.items()
                   if (s in recorded or s.startswith(prefix)) and s not in ours and not p.dead]
        for session in orphans:
            self.tmux.kill_session(session)
        return orphans

    # ----- mail -------------------------------------------------------------------------------------------
    def handle_mail(self) -> bool:
        """Handle up to MAIL_BATCH messages, oldest first; True if more are waiting (the next step comes at once,
        after this one's other duties: a long backlog never holds up timeouts, pane checks or dispatch).

        Each message is handled, then claimed: a crash in between replays it, and handlers are idempotent.
        A message whose handling fails is tried again at the next steps, then set aside in `bad/` with the
        reason; the messages behind it go on meanwhile. Only a ledger that cannot be written at all (a full
        disk) stops the batch: nothing could be recorded, so the rest waits until it can.
        """
        batch = self.mailbox.list(limit=MAIL_BATCH)
        for delivered in batch:
            if not self._handle_one(delivered):
                return True
        more = len(batch) == MAIL_BATCH
        if more:
            self.wake.set()
        return more

    def _handle_one(self, delivered: Delivered) -> bool:
        """Handle and claim one message; False if the ledger cannot be written (the message stays unread)."""
        msg = delivered.message
        try:
            self.handle(msg)
        except StaleTransition:
            pass  # the attempt it speaks for was already settled: nothing to do
        except LedgerUnwritable as exc:
            self.errors.report("ledger-unwritable", f"cannot record mail, the ledger cannot be written: {exc}")
            return False
        except Exception as exc:  # noqa: BLE001 - one bad message must never wedge the mailbox behind it
            self._handling_failed(delivered, f"{type(exc).__name__}: {exc}")
            return True
        self._mail_tries.pop(msg.id, None)
        self._ack(delivered)  # received and dealt with, whatever came of it
        self.mailbox.claim_loaded(delivered)
        return True

    def _handling_failed(self, delivered: Delivered, error: str) -> None:
        """Count a failed try at a message; at MAX_HANDLE_TRIES set it aside in `bad/` with the reason."""
        msg = delivered.message
        tries = self._mail_tries[msg.id] = self._mail_tries.get(msg.id, 0) + 1
        self.errors.report(f"mail:{msg.type}:{error}", f"could not handle {msg.type} {msg.id} from {msg.sender} "
                                                       f"(try {tries} of {MAX_HANDLE_TRIES}): {error}", exc_info=True)
        if tries < MAX_HANDLE_TRIES:
            return
        del self._mail_tries[msg.id]
        reason = f"the supervisor could not handle it {tries} times: {error}"
        self.mailbox.set_aside(delivered, reason)
        with suppress(LedgerError):
            self.ledger.append(EventType.CUSTOM, SUPERVISOR, msg.task, summary=f"set aside {msg.type} {msg.id} from "
                               f"{msg.sender} (see `agentmail bad {SUPERVISOR}`): {error}", msg=msg.id)

    def _ack(self, delivered: Delivered) -> None:
        msg = delivered.message
        if msg.ack_required and msg.sender != SUPERVISOR and msg.sender in self.post.agents():
            self.post.ack(SUPERVISOR, delivered)

    def handle(self, msg: Message) -> None:
        handler = {
            MessageType.ACCEPTED: self.on_accepted, MessageType.PROGRESS: self.on_progress,
            MessageType.DONE: self.on_done, MessageType.OFFERING_READY: self.on_done,
            MessageType.FAILED: self.on_failed, MessageType.CHECKPOINT: self.on_checkpoint,
            MessageType.HELP_REQUEST: self.on_help_request, MessageType.HELP_RESPONSE: self.on_help_response,
            MessageType.SPAWN_REQUEST: self.on_spawn_request, MessageType.SHUTDOWN: self.on_shutdown,
            MessageType.STEER: self.on_steer,
        }.get(msg.type)
        if handler is not None:
            handler(msg)

    def _current(self, msg: Message) -> tuple[Task, WorkerState] | None:
        """The task and worker this message speaks for, if the sender is still that task's worker."""
        worker = self.workers.get(msg.sender)
        if worker is None or msg.task not in (None, worker.task):
            return None
        task = self.ledger.board().get(worker.task)
        if task is None or task.assignee != worker.name or task.status not in LIVE_STATUSES:
            return None
        return task, worker

    def _final_report(self, msg: Message) -> tuple[Task, WorkerState] | None:
        """For DONE, FAILED and CHECKPOINT: the worker's first verdict on its attempt counts, later ones don't."""
        current = self._current(msg)
        if current is None or current[0].status == TaskStatus.VALIDATING:
            return None
        return current

    def on_accepted(self, msg: Message) -> None:
        current = self._current(msg)
        if current and current[0].status == TaskStatus.ASSIGNED:
            task, worker = current
            self.ledger.transition(task.id, TaskStatus.IN_PROGRESS, SUPERVISOR, EventType.TASK_STARTED,
                                   expect_assignee=worker.name, summary=f"{worker.name} started {task.id}: {task.title}", worker=worker.name,
                                   attempt=worker.attempt, msg=msg.id)
            self.ledger.append(EventType.AGENT_STARTED, SUPERVISOR, task.id, name=worker.name,
                               summary=f"{worker.name} is working on {task.id}")

    def on_progress(self, msg: Message) -> None:
        body = msg.body
        self.ledger.append(EventType.PROGRESS, msg.sender, msg.task, summary=body.step or body.status or "progress",
                           **clip_fields({"step": body.step, "status_text": body.status,
                                          "context_pct": body.context_pct, "files": body.files}, msg.id))
        self.on_accepted(msg)  # progress before ACCEPTED still means the worker has started

    def on_done(self, msg: Message) -> None:
        current = self._final_report(msg)
        if current is None:
            return
        task, worker = current
        body = msg.body
        self.ledger.transition(task.id, TaskStatus.VALIDATING, SUPERVISOR, EventType.TASK_VALIDATING,
                               expect_assignee=worker.name, summary=f"{worker.name} reports {task.id} done; validating", worker=worker.name,
                               **clip_fields({"claim": body.summary, "files": body.files, "commit": body.commit},
                                             msg.id))
        worker.reported = True
        self._validate(task, worker)

    def on_failed(self, msg: Message) -> None:
        current = self._final_report(msg)
        if current is None:
            return
        task, worker = current
        body = msg.body
        reason = f"{body.failure}: {body.reason}".strip()
        if body.recommendation:
            reason += f"\nRecommendation: {body.recommendation}"
        if body.failure == FailureType.LAUNCH_ERROR:
            self._launch_failed(task, worker, clip_text(body.reason, msg.id))
        else:
            self._fail(task, worker, clip_text(reason, msg.id))

    def on_checkpoint(self, msg: Message) -> None:
        current = self._final_report(msg)
        if current is None:
            return
        task, worker = current
        body = msg.body
        text = clip_text("\n".join(f"{k}: {v}" for k, v in (
            ("Reason", body.reason), ("Commit", body.commit), ("Done", body.done), ("Remaining", body.remaining),
            ("Next steps", body.next_steps)) if v), msg.id)
        if sum(a.outcome == AttemptOutcome.CHECKPOINT for a in task.attempts) >= self.config.max_checkpoints:
            self._fail(task, worker, f"checkpointed more than {self.config.max_checkpoints} times without finishing:"
                                     f"\n{text}")
            return
        self.ledger.transition(task.id, TaskStatus.OPEN, SUPERVISOR, EventType.TASK_CHECKPOINT,
                               expect_assignee=worker.name,
                               summary=f"{worker.name} checkpointed {task.id}; a successor continues",
                               worker=worker.name, reason=text, msg=msg.id)
        worker.reported = True
        self._release(worker, "checkpoint taken: a successor continues")

    def on_help_request(self, msg: Message) -> None:
        body = msg.body
        summary = ((body.question or body.problem).strip().splitlines() or ["help requested"])[0][:200]
        self.ledger.append(EventType.QUESTION, msg.sender, msg.task, summary=summary, kind=body.kind,
                           **clip_fields({"problem": body.problem, "tried": body.tried, "question": body.question},
                                         msg.id))
        if self.config.helper_profile and msg.task in self.ledger.board():
            self._spawn_helper(msg)

    def on_help_response(self, msg: Message) -> None:
        """A helper's answer sent to the supervisor goes on to the task's current worker."""
        task = self.ledger.board().get(msg.body.task)
        if task and task.assignee and task.assignee != msg.sender:
            self.post.send(make_message(MessageType.HELP_RESPONSE, SUPERVISOR, task.assignee,
                                        msg.body.model_dump(), thread=task.id, reply_to=msg.id))
            record_answer(self.ledger, msg.sender, task.assignee, task.id, msg.body.answer, msg.id)

    def on_spawn_request(self, msg: Message) -> None:
        if msg.sender not in self.post.agents():
            return  # nobody to answer
        reason = "workers are started from the board: add a task (`swarm task add`) and the supervisor assigns it"
        self.post.send(make_message(MessageType.SPAWN_ACK, SUPERVISOR, msg.sender,
                                    {"request_id": msg.id, "accepted": False, "reason": reason}, reply_to=msg.id))

    def on_shutdown(self, msg: Message) -> None:
        self.ledger.append(EventType.CUSTOM, msg.sender, summary=f"shutdown requested: {msg.body.reason}".strip())
        self.stop()

    def on_steer(self, msg: Message) -> None:
        self.ledger.append(EventType.CUSTOM, msg.sender, msg.body.task, summary=f"steer: {msg.body.text}", msg=msg.id)

    # ----- validation -------------------------------------------------------------------------------------
    def _validate(self, task: Task, worker: WorkerState) -> None:
        """Run the task's checks off this thread; the result comes back through `results`."""
        def job() -> None:
            try:
                workdir = self.spawner.workdir_for(task)
                report = run_checks(task.validation, workdir=workdir)
                refused = self.planning.after_checks(task, worker.attempt, workdir) if report.passed else None
                result = ValidationResult(task.id, worker.name, report, refused=refused or "")
            except Exception as exc:  # noqa: BLE001 - a result must come back, or the task waits forever
                result = ValidationResult(task.id, worker.name, None, f"{type(exc).__name__}: {exc}")
            self.results.put(result)
            self.wake.set()

        self.checks.submit(job)

    def handle_validations(self) -> None:
        while not self.results.empty():
            result = self.results.get_nowait()
            worker = self.workers.get(result.worker)
            task = self.ledger.board().get(result.task)
            if worker is None or task is None or task.status != TaskStatus.VALIDATING or task.assignee != worker.name:
                continue
            try:
                self._judge(task, worker, result)
            except StaleTransition:
                pass  # reopened or killed while its checks ran
            except Exception:
                self.results.put(result)  # not lost: the next step tries again
                raise

    def _judge(self, task: Task, worker: WorkerState, result: ValidationResult) -> None:
        if result.report is None:
            self._fail(task, worker, f"validation could not run: {result.error}")
        elif result.refused:
            self._fail(task, worker, result.refused)
        elif result.report.passed:
            self._complete(task, worker, result.report)
        else:
            failed = sum(not o.passed for o in result.report.outcomes)
            self._fail(task, worker, f"validation failed ({failed} of {len(result.report.outcomes)} checks)\n"
                       + result.report.summary())

    def _complete(self, task: Task, worker: WorkerState, report: ValidationReport) -> None:
        self.ledger.transition(task.id, TaskStatus.DONE, SUPERVISOR, EventType.TASK_COMPLETED,
                               expect_assignee=worker.name, summary=f"{task.id} done and validated ({worker.name}, attempt {worker.attempt})",
                               worker=worker.name, attempt=worker.attempt, validation=report.summary())
        self._release(worker, "task done and validated")
        if self.config.on_task_done:
            self.hooks.submit(run_task_done_hook, self.config.on_task_done, task, self.home, self.ledger,
                              cwd=project_dir(self.home, self.config.project), timeout=self.config.hook_timeout)

    # ----- failure ----------------------------------------------------------------------------------------
    def _fail(self, task: Task, worker: WorkerState, reason: str, why: str = "stopped: attempt failed") -> None:
        """A failed attempt: back to open with the reason for the next attempt, or blocked when spent."""
        failed = 1 + task.failed_attempts()
        status = TaskStatus.BLOCKED if failed >= self.max_attempts(task) else TaskStatus.OPEN
        first_line = reason.strip().splitlines()[0][:160] if reason.strip() else "failed"
        self.ledger.transition(task.id, status, SUPERVISOR, EventType.TASK_FAILED, expect_assignee=worker.name,
                               summary=f"{task.id} attempt {worker.attempt} failed: {first_line}",
                               worker=worker.name, attempt=worker.attempt, reason=reason, failed_attempts=failed)
        if status == TaskStatus.BLOCKED:
            self.ledger.append(EventType.BLOCKER_FOUND, SUPERVISOR, task.id,
                               summary=f"{task.id} blocked after {failed} failed attempts: {first_line}",
                               reason=reason)
        self._end_worker(worker, AgentStatus.DEAD, why)

    def _launch_failed(self, task: Task, worker: WorkerState, error: str) -> None:
        """The worker could not be started at all (a missing executable or directory, a broken profile): a setup
        mistake, so no attempt is spent, and retrying by itself would only fail again. The task is blocked
        until a person fixes the setup and retries it; the feed says so once."""
        self.ledger.transition(task.id, TaskStatus.BLOCKED, SUPERVISOR, EventType.TASK_FAILED,
                               expect_assignee=worker.name,
                               summary=f"{task.id}: {worker.name} could not start: {error.splitlines()[0][:160]}",
                               worker=worker.name, reason=f"could not start the worker: {error}",
                               outcome=AttemptOutcome.ABANDONED.value)
        self.ledger.append(EventType.BLOCKER_FOUND, SUPERVISOR, task.id, reason=error,
                           summary=f"{task.id} is blocked: its worker cannot start ({error.splitlines()[0][:160]}); "
                                   f"fix the setup, then `swarm retry {task.id}`")
        self._end_worker(worker, AgentStatus.DEAD, "stopped: could not start")

    def _abandon(self, task: Task, reason: str) -> None:
        """The attempt ended through no fault of its worker: back to open without spending an attempt."""
        self.ledger.transition(task.id, TaskStatus.OPEN, SUPERVISOR, EventType.TASK_FAILED,
                               expect_assignee=task.assignee, summary=f"{task.id} back to open: {reason}",
                               worker=task.assignee, reason=reason,
                               outcome=AttemptOutcome.ABANDONED.value)
        if task.assignee:
            self._mark_agent(task.assignee, AgentStatus.DEAD)

    def _end_worker(self, worker: WorkerState, status: AgentStatus, why: str | None = None) -> None:
        """Stop a worker whose attempt is over. A failed worker's dead pane is kept for a post-mortem."""
        self.workers.pop(worker.name, None)
        pane = self.tmux.pane(worker.session)
        if pane is not None and (not pane.dead or status != AgentStatus.DEAD):
            self.tmux.kill_session(worker.session)
        self._mark_agent(worker.name, status, why)

    def _release(self, worker: WorkerState, reason: str) -> None:
        """The attempt is over and went well: tell the worker (SHUTDOWN) and give it `shutdown_grace` seconds
        to exit on its own (an agent may still print its summary or commit), then end its session."""
        self.workers.pop(worker.name, None)
        with suppress(MailError):
            self.post.send(make_message(MessageType.SHUTDOWN, SUPERVISOR, worker.name, {"reason": reason},
                                        thread=worker.task))
        self.finishing[worker.name] = (worker.session, self.monotonic() + self.config.shutdown_grace)
        self._mark_agent(worker.name, AgentStatus.STOPPED)

    def _let_released_finish(self, limit: float) -> None:
        """Stopping: give released workers the rest of their grace, at most `limit` seconds, then end them
        (the last task of a plan is as entitled to its last words as the others)."""
        deadline = self.monotonic() + limit
        while self.finishing:
            self.wake.clear()
            now = self.monotonic()
            if now >= deadline:
                self.finishing = {name: (session, now) for name, (session, _) in self.finishing.items()}
            self.reap_finishing(self.tmux.panes())
            if self.finishing:
                self.wake.wait(min(self.config.tick, max(0.0, deadline - now)))  # a pane's end wakes us

    def reap_finishing(self, panes: dict[str, PaneInfo]) -> None:
        """End the sessions of released workers that have exited, or whose grace period is over."""
        now = self.monotonic()
        for name, (session, deadline) in list(self.finishing.items()):
            pane = panes.get(session)
            if pane is None or pane.dead or now >= deadline:
                del self.finishing[name]
                if pane is not None:
                    self.tmux.kill_session(session)

    def _mark_agent(self, name: str, status: AgentStatus, why: str | None = None) -> None:
        """Record that an agent has stopped (its work is over) or died (it failed or was lost); `why` words it."""
        if name in self.ledger.registry():
            self.ledger.append(EventType.AGENT_STOPPED, SUPERVISOR, name=name, status=status.value,
                               summary=f"{name} {why or ('stopped' if status == AgentStatus.STOPPED else 'is dead')}")

    # ----- timers -----------------------------------------------------------------------------------------
    def check_workers(self) -> None:
        """Dead panes, lost tmux server, stale heartbeats and timeouts, each a failed attempt with its reason."""
        if not self.workers and not self.helpers and not self.finishing:
            return
        panes = self.tmux.panes()
        self.reap_helpers(panes)
        self.reap_finishing(panes)
        if not panes and not self.tmux.is_running():
            self._tmux_lost()
            return
        registry, board = self.ledger.registry(), self.ledger.board()
        now = self.monotonic()
        for worker in list(self.workers.values()):
            task = board.get(worker.task)
            if task is None or task.assignee != worker.name or task.status not in LIVE_STATUSES:
                self._end_worker(worker, AgentStatus.STOPPED)  # taken away (reopened, cancelled): stop it, no failure
                continue
            if worker.reported or worker.name not in self.workers:
                continue
            pane = panes.get(worker.session)
            if pane is not None and pane.dead and self._status_pending(worker, pane, now):
                continue
            with suppress(StaleTransition):  # settled meanwhile by mail or an operator: the next step sees it
                self._check_worker(task, worker, pane, registry.get(worker.name), now)

    def _check_worker(self, task: Task, worker: WorkerState, pane: PaneInfo | None, entry: RegistryEntry | None,
                      now: float) -> None:
        if pane is None or pane.dead:
            self._pane_ended(task, worker, pane)
        elif now - worker.started_at > (limit := task.timeout or self.config.task_timeout):
            self._fail(task, worker, f"TIMEOUT: no result within {limit:g} s")
        elif self._stale(worker, entry, now):
            self._fail(task, worker, f"no heartbeat for over {self.config.stale_after:g} s: the worker seems stuck")

    def _status_pending(self, worker: WorkerState, pane: PaneInfo, now: float) -> bool:
        """tmux may show a pane dead (its pty closed) a moment before it has reaped the exit status."""
        if pane.exit_status is not None or pane.signal is not None or self.spawner.exit_status(worker.name) is not None:
            return False
        worker.dead_since = worker.dead_since or now
        return now - worker.dead_since < EXIT_STATUS_GRACE

    def _pane_ended(self, task: Task, worker: WorkerState, pane: PaneInfo | None) -> None:
        if self.handle_mail():
            return  # its last words may be in the backlog still: judge the pane once that is read
        task = self.ledger.board().get(task.id, task)
        if worker.reported or worker.name not in self.workers or task.assignee != worker.name:
            return
        code = pane.exit_status if pane is not None and pane.exit_status is not None else \
            self.spawner.exit_status(worker.name)
        status = (f"was killed by signal {pane.signal}" if pane is not None and pane.signal is not None
                  else f"exited with status {code}" if code is not None else "ended")
        tail = read_tail(self.spawner.log_path(worker.name), 0)
        reason = f"worker {worker.name} {status} without reporting DONE or FAILED"
        self._fail(task, worker, reason + (f"\nLast output:\n{tail[-800:]}" if tail else ""), why=f"is dead: {status}")

    def _stale(self, worker: WorkerState, entry: RegistryEntry | None, now: float) -> bool:
        """No new heartbeat for stale_after seconds, timed from when this supervisor saw the last one change:
        heartbeats are wall-clock mtimes, and a step of that clock must not make them look old or new."""
        beat = entry.last_heartbeat if entry else None
        if worker.beat_seen_at is None or beat != worker.last_beat:
            worker.last_beat, worker.beat_seen_at = beat, now if beat is not None else worker.started_at
        return now - worker.beat_seen_at > self.config.stale_after

    def _tmux_lost(self) -> None:
        """The whole tmux server went away: every attempt is abandoned, not failed, and starts again."""
        lost = [w for w in self.workers.values() if not w.reported]  # a reported DONE is still being checked
        for worker in lost:
            self.workers.pop(worker.name)
        self.ledger.append(EventType.CUSTOM, SUPERVISOR, summary=f"tmux server lost: {len(lost)} workers gone; "
                                                                  "their tasks go back to open")
        board = self.ledger.board()
        for worker in lost:
            task = board.get(worker.task)
            if task is not None and task.status in LIVE_STATUSES and task.assignee == worker.name:
                self._abandon(task, "the tmux server was lost")

    # ----- dispatch ---------------------------------------------------------------------------------------
    def dispatch(self) -> None:
        """Assign ready tasks, best priority first, while fewer than max_workers tasks are live."""
        board = self.ledger.board()
        live = sum(t.status in LIVE_STATUSES for t in board.values())
        free = self.max_workers - live - len(self.helpers)
        if free <= 0:
            return
        done = {t.id for t in board.values() if t.status == TaskStatus.DONE}
        ready = sorted((t for t in board.values() if t.is_ready(done)), key=lambda t: (t.priority, t.created, t.id))
        for task in ready[:free]:
            self.start_attempt(task)

    def start_attempt(self, task: Task) -> None:
        """Assign first (the ledger says who owns the task), then start the worker's session."""
        for old in [w for w in self.workers.values() if w.task == task.id]:
            self._end_worker(old, AgentStatus.STOPPED)  # never two workers on one task
        worker = f"w{self._next_worker}"
        self._next_worker += 1
        attempt = len(task.attempts) + 1
        session = self.spawner.session_name(worker)
        self.ledger.transition(task.id, TaskStatus.ASSIGNED, SUPERVISOR, EventType.TASK_ASSIGNED,
                               summary=f"{task.id} assigned to {worker} (attempt {attempt})", worker=worker,
                               attempt=attempt)
        self.ledger.register_agent(RegistryEntry(name=worker, role="worker", status=AgentStatus.STARTING,
                                                 session=session, task=task.id, host=socket.gethostname()), SUPERVISOR)
        self.post.register(worker, role="worker")
        state = WorkerState(name=worker, task=task.id, attempt=attempt, session=session, started_at=self.monotonic())
        self.workers[worker] = state
        self.post.send(make_message(MessageType.TASK_ASSIGN, SUPERVISOR, worker, {
            "task": task.id, "title": task.title, "description": task.description, "attempt": attempt,
            "max_attempts": self.max_attempts(task), "prompt_file": str(self.home.prompts_dir / f"{worker}.md"),
        }, thread=task.id))
        try:
            pane = self.spawner.spawn(task, worker=worker, attempt=attempt, max_attempts=self.max_attempts(task))
        except SwarmError as exc:
            self._launch_failed(self.ledger.task(task.id), state, str(exc))
            return
        self.ledger.update_agent(worker, SUPERVISOR, pid=pane.pid)
        self.ledger.append(EventType.WORKER_SPAWNED, SUPERVISOR, task.id, summary=f"{worker} started in tmux "
                           f"session {session}", worker=worker, session=session, pid=pane.pid, attempt=attempt)

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
            self.spawner.spawn(task, worker=helper, attempt=1, role="helper", prompt=prompt)
        except SwarmError as exc:
            self.ledger.append(EventType.CUSTOM, SUPERVISOR, task.id, summary=f"could not start helper: {exc}")

    def reap_helpers(self, panes: dict[str, PaneInfo]) -> None:
        """A helper whose pane has ended is done: its session goes, its slot frees up."""
        registry = self.ledger.registry()
        for helper in list(self.helpers):
            session = self._recorded_session(registry, helper)
            pane = panes.get(session)
            if pane is None or pane.dead:
                del self.helpers[helper]
                self.tmux.kill_session(session)
                self._mark_agent(helper, AgentStatus.STOPPED)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What tells a changed file from the one read before: (inode, size, mtime in ns); None if it is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _worker_number(name: str) -> int:
    digits = name[1:]
    return int(digits) if name[:1] in ("w", "h") and digits.isdigit() else 0

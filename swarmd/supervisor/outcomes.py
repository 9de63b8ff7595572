"""How an attempt ends: its DONE validated off the loop's thread, then completed, failed (with the failure fed
to the next attempt), abandoned or blocked; a released worker gets SHUTDOWN and a grace period."""

import logging
from contextlib import suppress
from typing import Any

from agentmail.errors import MailError
from protocol.agent import AgentStatus
from protocol.event import EventType
from protocol.messages import MessageType, make_message
from protocol.task import AttemptOutcome, Task, TaskStatus
from swarmd.home import project_dir
from swarmd.ledger.log import StaleTransition
from swarmd.supervisor.hooks import run_task_done_hook
from swarmd.supervisor.state import SUPERVISOR, ValidationResult, WorkerState
from swarmd.supervisor.validation import ValidationReport, run_checks
from swarmd.supervisor.health import PaneLook

log = logging.getLogger("swarmd.supervisor")


class Outcomes:
    """The part of `Supervisor` that validates, completes, fails and releases attempts.

    A mixin over the loop's state: it holds no state of its own.
    """

    def _validate(self, task: Task, worker: WorkerState) -> None:
        """Run the task's checks off this thread; the result comes back through `results`. A task with nothing
        to check (no checks, no worktree to commit, no planning tool to ask) passes at once: its result is
        queued here, for the step's `handle_validations`, and never waits behind other tasks' long checks."""
        if not self._has_checks(task):
            self.results.put(ValidationResult(task.id, worker.name, ValidationReport(passed=True, outcomes=[])))
            self.wake.set()  # taken by this step, or the next if this step's results were already taken
            return

        def job() -> None:
            try:
                if away := self.come_home(worker):  # a remote attempt's branch could not be had from its host
                    result = ValidationResult(task.id, worker.name, None, refused=away)
                else:
                    workdir = self.workdir_of(task)
                    commit = self.keep_leftovers(task.id, worker)
                    report = run_checks(task.validation, workdir=workdir)
                    refused = self.planning.after_checks(task, worker.attempt, workdir) if report.passed else None
                    result = ValidationResult(task.id, worker.name, report, refused=refused or "", commit=commit)
            except Exception as exc:  # noqa: BLE001 - a result must come back, or the task waits forever
                result = ValidationResult(task.id, worker.name, None, f"{type(exc).__name__}: {exc}")
            self.results.put(result)
            self.wake.set()

        self.checks.submit(job)

    def _has_checks(self, task: Task) -> bool:
        """Whether judging `task`'s DONE needs work off the loop: checks to run, leftovers to commit in its
        worktree, or a planning tool to ask."""
        return bool(task.validation and task.validation.checks) or task.id in self.trees \
            or self.planning.checks_after(task)

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
        if result.refused:
            self._fail(task, worker, result.refused)
        elif result.report is None:
            self._fail(task, worker, f"validation could not run: {result.error}")
        elif result.report.passed and task.id in self.trees:
            self.enqueue(task, worker, result.commit or self.trees[task.id].base)
        elif result.report.passed:
            self._complete(task, worker, result.report)
        else:
            failed = sum(not o.passed for o in result.report.outcomes)
            self._fail(task, worker, f"validation failed ({failed} of {len(result.report.outcomes)} checks)\n"
                       + result.report.summary())

    def _complete(self, task: Task, worker: WorkerState, report: ValidationReport | None, **merged: Any) -> None:
        """Done: validated (`report`), or validated and landed by the merge queue (`merge=...`, no report)."""
        landed = f", landed on {merged['merge']['integration']}" if merged else ""
        self.ledger.transition(task.id, TaskStatus.DONE, SUPERVISOR, EventType.TASK_COMPLETED,
                               expect_assignee=worker.name,
                               summary=f"{task.id} done and validated ({worker.name}, attempt {worker.attempt}{landed})",
                               worker=worker.name, attempt=worker.attempt,
                               validation=report.summary() if report else "passed before the merge", **merged)
        if report is not None:
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
        self.keep_leftovers(task.id, worker, " (failed)")  # its branch and worktree stay for inspection
        self.trees.pop(task.id, None)

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
        self.worker_up(worker)  # up and gone: the warm pool need not wait for it
        if worker.host:
            self.stop_remote(worker.host, worker.name, worker.attempt, why or "the attempt is over")
        elif (pane := self.tmux.pane(worker.session)) is not None and (not pane.dead or status != AgentStatus.DEAD):
            self.tmux.kill_session(worker.session)
        self._mark_agent(worker.name, status, why)

    def _release(self, worker: WorkerState, reason: str) -> None:
        """The attempt is over and went well: tell the worker (SHUTDOWN) and give it `shutdown_grace` seconds
        to exit on its own (an agent may still print its summary or commit), then end its session."""
        self.workers.pop(worker.name, None)
        if worker.host:  # its host gives it the SHUTDOWN and the grace
            self.stop_remote(worker.host, worker.name, worker.attempt, reason, grace=self.config.shutdown_grace)
        else:
            with suppress(MailError):
                if not self.post.transport.unreachable():  # down: its grace ends it all the same
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
            self.reap_finishing(PaneLook(self.tmux.panes(), complete=True))
            if self.finishing:
                self.wake.wait(min(self.config.tick, max(0.0, deadline - now)))  # a pane's end wakes us

    def reap_finishing(self, look: "PaneLook | None") -> None:
        """End the sessions of released workers that have exited, or whose grace period is over (`look` None:
        the panes were not looked at this time, so only the grace periods are). A pane the pool runs whose
        worker exited 0 is left to the pool, which takes it back (`swarmd.workers.warmpanes`)."""
        now, ended = self.monotonic(), []
        for name, (session, deadline) in list(self.finishing.items()):
            pane = look.panes.get(session) if look is not None else None
            if pane is not None and pane.dead and pane.exit_status == 0 and self.pooled(session) and now < deadline:
                continue  # the pool renames it away (seen gone at a listing) or it dies (then ended here)
            if (look is not None and look.seen(session) and (pane is None or pane.dead)) or now >= deadline:
                del self.finishing[name]
                if pane is not None or look is None or now >= deadline:
                    ended.append(session)
        self.end_sessions(ended)  # one tmux call for them all, off the step's thread

    def _mark_agent(self, name: str, status: AgentStatus, why: str | None = None) -> None:
        """Record that an agent has stopped (its work is over) or died (it failed or was lost); `why` words it."""
        if self.ledger.knows_agent(name):
            self.ledger.append(EventType.AGENT_STOPPED, SUPERVISOR, name=name, status=status.value,
                               summary=f"{name} {why or ('stopped' if status == AgentStatus.STOPPED else 'is dead')}")

    # ----- timers -----------------------------------------------------------------------------------------

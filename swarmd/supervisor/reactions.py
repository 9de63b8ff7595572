"""The supervisor's reactions to mail: claimed in bounded batches, one handler per message type; a message
whose handling keeps failing is set aside in `bad/` with the reason, so the loop always moves on."""

import logging
from contextlib import suppress

from agentmail import Delivered
from protocol.event import EventType
from protocol.messages import FailureType, Message, MessageType, make_message
from protocol.task import LIVE_STATUSES, AttemptOutcome, Task, TaskStatus
from swarmd.errors import LedgerError, SwarmError
from swarmd.ledger.log import LedgerUnwritable, StaleTransition, clip_fields, clip_text
from swarmd.ledger.questions import record_answer
from swarmd.supervisor.state import MAIL_BATCH, MAX_HANDLE_TRIES, SUPERVISOR, WorkerState

log = logging.getLogger("swarmd.supervisor")


class MailReactions:
    """The part of `Supervisor` that claims and handles its mail.

    A mixin over the loop's state: it holds no state of its own.
    """

    def handle_mail(self) -> bool:
        """Handle up to MAIL_BATCH messages, oldest first; True if more are waiting (the next step comes at once,
        after this one's other duties: a long backlog never holds up timeouts, pane checks or dispatch).

        Each message is handled, then claimed: a crash in between replays it, and handlers are idempotent.
        A message whose handling fails is tried again at the next steps, then set aside in `bad/` with the
        reason; the messages behind it go on meanwhile. Only a ledger that cannot be written at all (a full
        disk) stops the batch: nothing could be recorded, so the rest waits until it can.
        """
        self.mail_read_at = self.clock()
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
            MessageType.STEER: self.on_steer, MessageType.AGENT_STATE: self.on_agent_state,
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

    def _read_at(self) -> str | None:
        """When the step that handles a message read it from the mailbox (ISO 8601, the supervisor's clock), for
        the event it causes: the time from the message's arrival to its handling is then in the ledger."""
        return self.mail_read_at.isoformat() if self.mail_read_at is not None else None

    def on_accepted(self, msg: Message) -> None:
        current = self._current(msg)
        if current and current[0].status == TaskStatus.ASSIGNED:
            task, worker = current
            self.ledger.transition(task.id, TaskStatus.IN_PROGRESS, SUPERVISOR, EventType.TASK_STARTED,
                                   expect_assignee=worker.name, summary=f"{worker.name} started {task.id}: {task.title}", worker=worker.name,
                                   attempt=worker.attempt, msg=msg.id, read_at=self._read_at())
            self.ledger.append(EventType.AGENT_STARTED, SUPERVISOR, task.id, name=worker.name,
                               summary=f"{worker.name} is working on {task.id}")
            self.worker_up(worker)

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
                               read_at=self._read_at(), **clip_fields(
                                   {"claim": body.summary, "files": body.files, "commit": body.commit}, msg.id))
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
        """STEER for a task: an interactive worker on it gets the text queued, delivered into its pane once its
        agent is idle; otherwise the steer is only recorded."""
        task = self.ledger.board().get(msg.body.task) if msg.body.task else None
        worker = task.assignee if task is not None else None
        if worker in self.workers and self.interactive(worker):
            with suppress(SwarmError):  # a full queue: the steer is still recorded below
                self.prompt_queue(worker).push(msg.body.text, kind="steer", sender=msg.sender)
        self.ledger.append(EventType.CUSTOM, msg.sender, msg.body.task, summary=f"steer: {msg.body.text}", msg=msg.id)

    # ----- validation -------------------------------------------------------------------------------------

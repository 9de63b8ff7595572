"""The order of a supervisor step's duties: what makes a task ready is acted on before the slower looks."""

import threading

from agentmail import PostOffice
from protocol.event import EventType
from protocol.messages import MessageType, make_message
from protocol.task import Task, TaskStatus
from swarmd.home import SwarmHome
from swarmd.supervisor.loop import Supervisor
from swarmd.supervisor.state import SUPERVISOR, WorkerState
from swarmkit import init_home, wait_until


class _LookRecorder(Supervisor):
    """A supervisor that records the tasks' statuses as each step starts to look at the workers' panes."""

    def check_workers(self) -> None:
        self.statuses_at_look = {tid: task.status for tid, task in self.ledger.board().items()}
        super().check_workers()


def _assigned(supervisor: Supervisor, task: str, worker: str) -> PostOffice:
    """`task` assigned to `worker` (no session started); the post office it reports through."""
    supervisor.ledger.transition(task, TaskStatus.ASSIGNED, SUPERVISOR, EventType.TASK_ASSIGNED, worker=worker,
                                 attempt=1)
    supervisor.workers[worker] = WorkerState(name=worker, task=task, attempt=1, session=f"t-{worker}",
                                             started_at=supervisor.monotonic())
    post = PostOffice(supervisor.home.root, durable=False)
    post.register(worker, role="worker")
    return post


def _reporting_done(supervisor: Supervisor, task: str, worker: str) -> None:
    """`task` assigned to `worker`, whose DONE has been read and whose (empty) checks have passed."""
    post = _assigned(supervisor, task, worker)
    post.send(make_message(MessageType.DONE, worker, SUPERVISOR, {"task": task, "summary": "done"}))
    supervisor.handle_mail()
    wait_until(lambda: not supervisor.results.empty(), what="the validation's result")


def test_a_task_made_ready_is_assigned_before_the_step_looks_at_the_panes(swarm_home: SwarmHome) -> None:
    """A look at the panes waits on tmux (tens of ms on a busy machine): the dependent of a task just validated
    is assigned first, so that its worker's start does not wait for the look."""
    init_home(swarm_home)
    supervisor = _LookRecorder(swarm_home)
    supervisor.ledger.add_tasks([Task(id="first", title="first", description="true"),
                                 Task(id="after", title="after", description="true", blocked_by=["first"])],
                                "operator")
    _reporting_done(supervisor, "first", "w1")
    supervisor.step()
    assert supervisor.statuses_at_look == {"first": TaskStatus.DONE, "after": TaskStatus.ASSIGNED}
    supervisor.checks.shutdown()


def test_a_done_with_nothing_to_check_is_judged_in_the_step_that_reads_it(swarm_home: SwarmHome) -> None:
    """No check, no worktree, no planning tool: the task is done in the step that reads its DONE, without a
    round through the validation threads, where it would wait behind other tasks' long checks."""
    init_home(swarm_home)
    supervisor = Supervisor(swarm_home)
    supervisor.ledger.add_task(Task(id="quick", title="quick", description="true"), "operator")
    release = threading.Event()
    busy = [supervisor.checks.submit(release.wait) for _ in range(supervisor.checks._max_workers)]
    try:
        post = _assigned(supervisor, "quick", "w1")
        post.send(make_message(MessageType.DONE, "w1", SUPERVISOR, {"task": "quick", "summary": "done"}))
        supervisor.step()
        assert supervisor.ledger.task("quick").status == TaskStatus.DONE
    finally:
        release.set()
        for job in busy:
            job.result()
        supervisor.checks.shutdown()

"""`swarm run`: put a plan on the board and, if asked, follow the ledger until every task is final."""

import threading
from collections.abc import Callable
from dataclasses import dataclass

from protocol.event import Event, EventType
from protocol.task import FINAL_STATUSES, Task, TaskStatus
from swarmd.config import Config
from swarmd.errors import ConfigError, SwarmError
from swarmd.executables import missing_programs
from swarmd.ledger.log import Ledger
from swarmd.plans.plan import Plan

OPERATOR = "operator"


@dataclass
class LoadResult:
    added: list[str]
    existing: list[str]
    completed: list[str]

    @property
    def ids(self) -> list[str]:
        return self.added + self.existing


def check_profiles(plan: Plan, config: Config) -> None:
    """Refuse a plan whose tasks name worker profiles that swarm.toml does not define, or whose profiles start
    a program that is not on PATH (ConfigError naming the profile and its tasks)."""
    problems = profile_problems(plan, config)
    if problems:
        raise ConfigError("; ".join(problems))


def profile_problems(plan: Plan, config: Config) -> list[str]:
    """Each unknown profile, and each profile whose program is missing, named with the tasks that use it."""
    unknown = sorted({t.profile for t in plan.tasks if t.profile and t.profile not in config.profiles})
    problems = []
    if unknown:
        problems.append(f"the plan uses worker profiles {', '.join(map(repr, unknown))} that swarm.toml does not "
                        f"define (it has {', '.join(sorted(config.profiles))}): add them under [profiles.NAME]")
    uses: dict[str, list[str]] = {}
    for task in plan.tasks:
        if task.id not in plan.completed:
            uses.setdefault(task.profile or config.default_profile, []).append(task.id)
    return problems + [str(m) for m in missing_programs(uses, config)]


def load_onto_board(ledger: Ledger, plan: Plan, agent: str = OPERATOR) -> LoadResult:
    """Add the plan's tasks that are not on the board yet (running a plan twice resumes it)."""
    board = ledger.board()
    existing = [t.id for t in plan.tasks if t.id in board]
    new = [t for t in plan.tasks if t.id not in board]
    if new:
        ledger.add_tasks(new, agent)
    completed = []
    for task_id in plan.completed:
        if ledger.task(task_id).status != TaskStatus.DONE:
            ledger.transition(task_id, TaskStatus.DONE, agent, EventType.TASK_COMPLETED,
                              summary=f"{task_id} recorded done by the plan")
            completed.append(task_id)
    return LoadResult(added=[t.id for t in new], existing=existing, completed=completed)


def stranded(board: dict[str, Task]) -> set[str]:
    """Open tasks that can never start: something they wait on, directly or not, is blocked or cancelled."""
    dead = {t.id for t in board.values() if t.status in (TaskStatus.BLOCKED, TaskStatus.CANCELLED)}
    stuck: set[str] = set()
    changed = True
    while changed:
        changed = False
        for task in board.values():
            if task.status == TaskStatus.OPEN and task.id not in stuck and any(
                    dep in dead or dep in stuck for dep in task.blocked_by):
                stuck.add(task.id)
                changed = True
    return stuck


def plan_finished(board: dict[str, Task], ids: list[str]) -> bool:
    """Every task of the plan is done, blocked or cancelled, or waits on one that is blocked or cancelled."""
    settled = stranded(board)
    return all(board[i].status in FINAL_STATUSES or i in settled for i in ids if i in board)


def when_done(wait: Callable[[], object]) -> threading.Event:
    """An event set once `wait()` returns (a thread's join, a process's exit): for `wait_for_plan`."""
    gone = threading.Event()
    threading.Thread(target=lambda: (wait(), gone.set()), daemon=True).start()
    return gone


def wait_for_plan(ledger: Ledger, ids: list[str], *, timeout: float | None, supervisor_gone: threading.Event,
                  on_event: Callable[[Event, dict[str, Task]], None]) -> dict[str, Task]:
    """Follow the ledger until every task in `ids` is done, blocked or cancelled; return the final board.

    Raises SwarmError when the timeout passes or the supervisor stops before the plan is finished.
    """
    stop = threading.Event()
    threading.Thread(target=lambda: (supervisor_gone.wait(timeout), stop.set()), daemon=True).start()
    since = ledger.last_seq()
    board = ledger.board()
    if plan_finished(board, ids):  # it may have finished while nobody waited (say, before a restart)
        return board
    for event in ledger.follow(since_seq=since, stop=stop):
        board = ledger.board()
        on_event(event, board)
        if plan_finished(board, ids):
            return board
    board = ledger.board()
    if plan_finished(board, ids):
        return board
    if supervisor_gone.is_set():
        raise SwarmError("the supervisor stopped before the plan finished: start it again with `swarm up`; "
                         "`swarm run PLAN --wait` resumes waiting")
    raise SwarmError(f"timed out after {timeout:g} s with tasks still running: see `swarm board`")

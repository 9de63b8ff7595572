"""Benchmark the swarm end to end with real tmux and real script workers.

Prints one JSON object. Every part runs in its own throw-away home under /tmp with its own private tmux
server (killed, and the home deleted, at the end). The swarms run with durable = false in swarm.toml (no
fsync, in the supervisor or its workers), except the latency section's with `--durable`.

1. spawn: 50 independent `sleep 30` tasks, max_workers 50, an in-process Supervisor. `dispatch()` is timed
   until 50 tmux sessions exist and 50 workers are in the registry; then the supervisor's loop runs and the
   time until every worker's ACCEPTED is sent (message ts) and recorded (task_started event) is reported.
2. dispatch latency: parallel chains of no-op tasks (`true`), one live task per chain (max_workers = chains,
   so no task waits for a worker slot). Ready (task_created, or the task_completed of its blocker) ->
   task_started (the supervisor handled the worker's ACCEPTED), and the supervisor's share of it:
   ready -> task_assigned and ready -> worker_spawned (session started). `segments`: the whole chain from the
   blocker's DONE sent to the supervisor to the dependent's ACCEPTED handled, cut at every mark
   the product records (see MARKS), each segment's p50/p99 and whose time it is (supervisor or worker).
3. throughput: a 200-task no-op plan at max_workers 16, against a bare ThreadPoolExecutor(16) running the
   same 200 `sh -c true` with subprocess.run.
Plus the worker's start-up cost (interpreter + imports), measured outside the swarm.
4. floors (scripts/bench_floors.py): a bare loop of 50 `tmux new-session`, and the 200 no-op tasks run
   through tmux sessions 16 at a time without swarmd, beside the spawn and throughput figures; `swarm
   --version`, `swarm status` and `agentmail send` and a whole no-op worker process against `python -c pass`.
5. idle: a real `swarm up` with 100 sleeping workers, its CPU % and RSS over 60 s, and each worker's own
   memory: the RSS and PSS of its swarmd processes (pane client, fork server keeper, wrapper).
The `targets` object says which of the issue's goals this run met.

    python scripts/bench_swarm.py [--spawn 50] [--chains 2] [--chain-length 50] [--tasks 200] [--parallel 16]
                                  [--idle-workers 100] [--idle-seconds 60] [--only SECTION ...] [--durable]
"""

import argparse
import json
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from protocol.event import Event, EventType
from protocol.task import LIVE_STATUSES, Task, TaskStatus
from swarmd.config import DEFAULT_TOML
from swarmd.home import SwarmHome
from swarmd.plans.plan import Plan
from swarmd.plans.runner import load_onto_board
from swarmd.supervisor.loop import SUPERVISOR, Supervisor
from swarmd.workers.forkserver import CLIENT
from swarmd.workers.warmpanes import WARM_MARK

sys.path.insert(0, str(Path(__file__).parent))
import bench_floors  # noqa: E402  (beside this script)

NAME = "bench"
SECTIONS = ("spawn", "latency", "throughput", "startup", "commands", "idle")
# Seconds between the bench's own looks at the board while a swarm runs: it shares the two cores with what it
# measures (a look every 0.1 s cost more CPU per task than a worker's pane client), and the times it reports
# come from the ledger's events, not from when it looked.
BENCH_POLL = 0.5
TARGET_SPAWN_S = 2.0
TARGET_DISPATCH_P50_MS = 80.0
TARGET_DISPATCH_P99_MS = 200.0
TARGET_THROUGHPUT_RATIO = 4.0  # the swarm's 200 no-op tasks within 4x of the bare tmux loop
TARGET_COMMAND_RATIO = 2.5  # each command within 2.5x of `python -c pass`
TARGET_IDLE_CPU_PCT, TARGET_IDLE_RSS_MB, TARGET_WRAPPER_RSS_MB = 1.0, 80.0, 15.0


# ----- helpers ---------------------------------------------------------------------------------------------

def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def dist_ms(values: list[float]) -> dict[str, Any]:
    """p50/p90/p99/max in milliseconds of a list of seconds."""
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50_ms": round(pct(values, 50) * 1000, 1), "p90_ms": round(pct(values, 90) * 1000, 1),
            "p99_ms": round(pct(values, 99) * 1000, 1), "max_ms": round(max(values) * 1000, 1),
            "mean_ms": round(statistics.fmean(values) * 1000, 1)}


def wait_until(condition: Callable[[], bool], timeout: float, poll: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)


def make_home(base: Path, label: str, fork_server: bool = True, durable: bool = False) -> SwarmHome:
    home = SwarmHome(base / label / ".swarm")
    home.ensure_dirs()
    toml = DEFAULT_TOML.replace('name = "swarm"', f'name = "{NAME}"')
    if not durable:
        toml = toml.replace("durable = true", "durable = false")
    toml = toml.replace("fork_server = true", f"fork_server = {str(fork_server).lower()}")
    assert f'name = "{NAME}"' in toml and f"durable = {str(durable).lower()}" in toml and "fork_server" in toml
    # `bare`: the pane runs `sleep 30` itself, no worker wrapper: what the supervisor and tmux cost alone.
    home.config_file.write_text(toml + '\n[profiles.bare]\ncommand = "sleep 30"\n')
    return home


def no_op(id: str, command: str = "true", after: Iterable[str] = (), profile: str | None = None) -> Task:
    return Task(id=id, title=f"bench {id}", description=command, blocked_by=list(after), profile=profile)


def by_type(events: list[Event], kind: EventType) -> dict[str, Event]:
    """The first event of `kind` per task."""
    found: dict[str, Event] = {}
    for event in events:
        if event.type == kind and event.task and event.task not in found:
            found[event.task] = event
    return found


def handled_mail(home: SwarmHome) -> list[Path]:
    """The supervisor's mail files, handled or about to be: one is moved to cur/ just after its event is
    written, so new/ may still hold some."""
    box = home.mail_dir / SUPERVISOR
    return [*(box / "cur").glob("*.json"), *(box / "new").glob("*.json")]


def mail_ts(home: SwarmHome, kind: str) -> dict[str, float]:
    """Message id -> creation time (epoch s) of the supervisor's handled mail of `kind`."""
    from datetime import datetime

    found = {}
    for path in handled_mail(home):
        data = json.loads(path.read_text())
        if data.get("type") == kind:
            found[data["id"]] = datetime.fromisoformat(data["ts"]).timestamp()
    return found


class Swarm:
    """An in-process Supervisor on a throw-away home: `start()` runs its loop in a thread, `close()` ends it all."""

    def __init__(self, home: SwarmHome, max_workers: int) -> None:
        self.home = home
        self.supervisor = Supervisor(home, max_workers=max_workers)
        self.ledger = self.supervisor.ledger
        self.thread: threading.Thread | None = None
        self.thread_cpu_s: float | None = None
        self.error: BaseException | None = None
        self.counts = {"steps": 0, "tmux_calls": 0}
        self._count(self.supervisor, "step", "steps")
        self._count(self.supervisor.tmux, "_run", "tmux_calls")

    def _count(self, obj: Any, method: str, key: str) -> None:
        """Count calls of one method of this instance (an instance attribute; the class is untouched)."""
        original = getattr(obj, method)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.counts[key] += 1
            return original(*args, **kwargs)
        setattr(obj, method, counted)

    def _target(self, body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except BaseException as exc:  # reported in the JSON, not lost in a thread
                self.error = exc
            finally:
                self.thread_cpu_s = time.thread_time()  # the supervisor thread's own CPU, start to stop
        return run

    def start(self) -> None:
        """`Supervisor.run()` in a thread; returns once it is up: recovered (supervisor_started is in the ledger)
        and, with the fork server, its warm panes ready (a swarm is measured running, not while it starts)."""
        self.thread = threading.Thread(target=self._target(self.supervisor.run), name="supervisor", daemon=True)
        self.thread.start()
        if not wait_until(lambda: any(e.type == EventType.SUPERVISOR_STARTED for e in self.ledger.events()), 30):
            raise RuntimeError("the supervisor did not start within 30 s")
        if not wait_until(self.warm, 30):
            raise RuntimeError("the supervisor's warm panes were not ready within 30 s")

    def warm(self) -> bool:
        config, pool = self.supervisor.config, self.supervisor.warm_panes
        return not config.fork_server or (pool is not None and len(pool) >= config.warm_panes)

    def start_loop_only(self) -> None:
        """`Supervisor.serve()`: the loop of `run()` without its `recover()` (the caller ran it already)."""
        self.thread = threading.Thread(target=self._target(self.supervisor.serve), name="supervisor", daemon=True)
        self.thread.start()

    def stop_supervisor(self) -> None:
        self.supervisor.stop()
        if self.thread is not None:
            self.thread.join(timeout=30)

    def close(self) -> None:
        """Stop the supervisor and its tmux server. The home stays until the bench's end (`main` removes them
        all): removing thousands of files between sections would slow the next section's file creations
        (ext4 passes over inodes freed in the last minutes when it allocates new ones)."""
        self.stop_supervisor()
        self.supervisor.tmux.kill_server()

    def events(self) -> list[Event]:
        return self.ledger.events()

    def all_done(self) -> bool:
        return all(t.status == TaskStatus.DONE for t in self.ledger.board().values())

    def worker_sessions(self) -> list[str]:
        """The workers' sessions (not the pane pool's waiting panes)."""
        return [s for s in self.supervisor.tmux.sessions(prefix=f"{NAME}-") if WARM_MARK not in s]

    def pool_panes(self) -> int:
        """Panes waiting in the pool (started ahead, or left by workers that exited 0)."""
        return sum(WARM_MARK in s for s in self.supervisor.tmux.sessions(prefix=f"{NAME}-"))

    def worker_entries(self) -> int:
        return sum(e.role == "worker" for e in self.ledger.registry().values())


def max_live(events: list[Event]) -> int:
    """The most tasks live (assigned, in progress or validating) at once, from the status in each event."""
    status: dict[str, str] = {}
    live_values = {s.value for s in LIVE_STATUSES}
    most = live = 0
    for event in events:
        new = event.detail.get("status") if event.task else None
        if new is None:
            continue
        was = status.get(event.task) in live_values
        now = new in live_values
        status[event.task] = new
        live += now - was
        most = max(most, live)
    return most


def outcome(events: list[Event]) -> dict[str, int]:
    return {"tasks_completed": sum(e.type == EventType.TASK_COMPLETED for e in events),
            "attempts_failed": sum(e.type == EventType.TASK_FAILED for e in events),
            "workers_spawned": sum(e.type == EventType.WORKER_SPAWNED for e in events),
            "failures": [f"{e.task}: {e.summary}"[:300] for e in events if e.type == EventType.TASK_FAILED][:5]}


# ----- 1. spawning 50 workers ------------------------------------------------------------------------------

def bench_spawn_bare(base: Path, count: int) -> dict[str, Any]:
    """`dispatch()` of `count` tasks whose panes run `sleep 30` directly: no Python worker competes for the CPU."""
    swarm = Swarm(make_home(base, "spawn-bare"), max_workers=count)
    try:
        load_onto_board(swarm.ledger, Plan(tasks=[no_op(f"b{i}", profile="bare") for i in range(count)]))
        swarm.supervisor.recover()
        t0 = time.time()
        swarm.supervisor.dispatch()
        dispatch_s = time.time() - t0
        up = wait_until(lambda: len(swarm.worker_sessions()) >= count and swarm.worker_entries() >= count, 30, 0.005)
        return {"workers": count, "dispatch_call_s": round(dispatch_s, 3),
                "sessions_up_and_registered_s": round(time.time() - t0, 3) if up else None,
                "per_spawn_ms": round(dispatch_s / count * 1000, 1), "tmux_calls": swarm.counts["tmux_calls"]}
    finally:
        swarm.close()


def bench_spawn(base: Path, count: int) -> dict[str, Any]:
    """Spawn with the fork server (the default), then the same with each pane starting its own interpreter."""
    floor = bench_floors.bare_tmux_sessions(base / "bare-sessions.sock", count)
    forked = _spawn(base, count, floor, fork_server=True)
    own = _spawn(base, count, floor, fork_server=False)
    ratio = (forked["all_accepted_sent_s"] / own["all_accepted_sent_s"]
             if forked.get("all_accepted_sent_s") and own.get("all_accepted_sent_s") else None)
    return {**forked, "without_fork_server": own,
            "ratio_accepted_to_without_fork_server": round(ratio, 2) if ratio else None}


def _spawn(base: Path, count: int, floor: float, *, fork_server: bool) -> dict[str, Any]:
    label = "spawn" if fork_server else "spawn-own-interpreter"
    swarm = Swarm(make_home(base, label, fork_server=fork_server), max_workers=count)
    try:
        load_onto_board(swarm.ledger, Plan(tasks=[no_op(f"s{i}", "sleep 30") for i in range(count)]))
        swarm.supervisor.recover()  # what run() does first; not part of the timing
        swarm.supervisor.start_fork_server()  # as `serve()` does before any task: a running swarm has it
        t0 = time.time()
        swarm.supervisor.dispatch()
        dispatch_s = time.time() - t0
        up = wait_until(lambda: len(swarm.worker_sessions()) >= count and swarm.worker_entries() >= count, 30, 0.005)
        up_s = time.time() - t0
        sessions, registered = len(swarm.worker_sessions()), swarm.worker_entries()
        swarm.start_loop_only()
        all_started = wait_until(
            lambda: sum(e.type == EventType.TASK_STARTED for e in swarm.events()) >= count, 90, 0.05)
        events = swarm.events()
        assigned = by_type(events, EventType.TASK_ASSIGNED)
        spawned = by_type(events, EventType.WORKER_SPAWNED)
        started = by_type(events, EventType.TASK_STARTED)
        accepted_sent = mail_ts(swarm.home, "ACCEPTED")
        sent = [accepted_sent[e.detail["msg"]] for e in started.values() if e.detail.get("msg") in accepted_sent]
        per_spawn = [spawned[t].ts.timestamp() - assigned[t].ts.timestamp() for t in spawned if t in assigned]
        live_panes = sum(not p.dead for p in swarm.supervisor.tmux.panes().values())
        return {
            "workers": count, "fork_server": fork_server,
            "dispatch_call_s": round(dispatch_s, 3),
            "sessions_up_and_registered_s": round(up_s, 3) if up else None,
            "sessions": sessions, "registered_workers": registered,
            "per_spawn_ms": dist_ms(per_spawn),  # task_assigned -> worker_spawned: prompt, tmux new-session
            "first_spawn_ms": round(min(per_spawn, default=0) * 1000, 1) if per_spawn else None,
            "all_accepted_sent_s": round(max(sent) - t0, 3) if len(sent) >= count else None,
            "all_accepted_recorded_s": round(max(e.ts.timestamp() for e in started.values()) - t0, 3)
            if all_started else None,
            "accepted_recorded": len(started),
            "panes_alive_at_end": live_panes,
            "floor_bare_new_session_loop_s": round(floor, 3),
            "ratio_accepted_to_floor": round((max(sent) - t0) / floor, 1) if len(sent) >= count else None,
            "target_under_s": TARGET_SPAWN_S,
            "target_met": bool(len(sent) >= count and max(sent) - t0 < TARGET_SPAWN_S),
            **({"supervisor_error": repr(swarm.error)} if swarm.error else {}),
        }
    finally:
        swarm.close()


# ----- 2. dispatch latency ---------------------------------------------------------------------------------

# The chain from a blocker's DONE to its dependent's ACCEPTED handled, in order: each mark is read from what the
# product records (ledger event times, the `read_at` the supervisor puts in the events a message causes, the
# messages' own `ts`, ACCEPTED's `started_at`), and each segment is the time between two marks. A message's
# `ts` is its writer's clock as it made it, a fraction of a millisecond before it lands in the mailbox (a mail
# file's mtime is no better: the kernel stamps it with its coarse clock, up to a tick, 4-10 ms, early).
MARKS = ("done_sent", "done_read", "validating", "completed", "assigned", "spawned", "worker_started_at",
         "accepted_sent", "accepted_read", "started")
SEGMENTS = {  # segment -> (from mark, to mark, whose time it is)
    "done_sent_to_read": ("done_sent", "done_read", "supervisor"),  # delivery, watch event, wake-up, a busy step
    "done_read_to_validating": ("done_read", "validating", "supervisor"),  # DONE handled: task_validating
    "validating_to_completed": ("validating", "completed", "supervisor"),  # checks off the loop, result taken
    "completed_to_assigned": ("completed", "assigned", "supervisor"),  # the dependent is ready: dispatch
    "assigned_to_spawned": ("assigned", "spawned", "supervisor"),  # mailbox, TASK_ASSIGN, prompt, tmux session
    "spawned_to_worker_started_at": ("spawned", "worker_started_at", "worker"),  # ACCEPTED's started_at
    # the pane's process began (with the fork server: its client) -> ACCEPTED sent
    "worker_started_at_to_accepted_sent": ("worker_started_at", "accepted_sent", "worker"),
    "accepted_sent_to_read": ("accepted_sent", "accepted_read", "supervisor"),
    "accepted_read_to_started": ("accepted_read", "started", "supervisor"),  # ACCEPTED handled: task_started
}


def mail_marks(home: SwarmHome, kind: str) -> dict[str, dict[str, float]]:
    """Message id -> {"ts": its creation time, "started_at": the body's started_at if any} (epoch s) of the
    supervisor's handled mail of `kind`."""
    from datetime import datetime

    found = {}
    for path in handled_mail(home):
        data = json.loads(path.read_text())
        if data.get("type") == kind:
            marks = {"ts": datetime.fromisoformat(data["ts"]).timestamp()}
            if started := data.get("body", {}).get("started_at"):
                marks["started_at"] = datetime.fromisoformat(started).timestamp()
            found[data["id"]] = marks
    return found


def _read_at(event: Event) -> float | None:
    from datetime import datetime

    read_at = event.detail.get("read_at")
    return datetime.fromisoformat(read_at).timestamp() if isinstance(read_at, str) else None


def chain_marks(events: list[Event], board: dict[str, Task], home: SwarmHome) -> dict[str, dict[str, float]]:
    """Task id -> its MARKS (epoch s), for each task that had a blocker and whose chain is fully recorded."""
    validating = by_type(events, EventType.TASK_VALIDATING)
    completed = by_type(events, EventType.TASK_COMPLETED)
    assigned = by_type(events, EventType.TASK_ASSIGNED)
    spawned = by_type(events, EventType.WORKER_SPAWNED)
    started = by_type(events, EventType.TASK_STARTED)
    done_mail, accepted_mail = mail_marks(home, "DONE"), mail_marks(home, "ACCEPTED")
    found = {}
    for tid, task in board.items():
        blocker = task.blocked_by[0] if task.blocked_by else None
        if blocker is None or not all(tid in kind for kind in (assigned, spawned, started)):
            continue
        if blocker not in validating or blocker not in completed:
            continue
        done = done_mail.get(validating[blocker].detail.get("msg"))
        accepted = accepted_mail.get(started[tid].detail.get("msg"))
        if done is None or accepted is None:
            continue
        marks = {"done_sent": done["ts"], "done_read": _read_at(validating[blocker]),
                 "validating": validating[blocker].ts.timestamp(), "completed": completed[blocker].ts.timestamp(),
                 "assigned": assigned[tid].ts.timestamp(), "spawned": spawned[tid].ts.timestamp(),
                 "worker_started_at": accepted.get("started_at"), "accepted_sent": accepted["ts"],
                 "accepted_read": _read_at(started[tid]), "started": started[tid].ts.timestamp()}
        if all(value is not None for value in marks.values()):
            found[tid] = marks
    return found


def segment_table(marks: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Each SEGMENT's distribution over the tasks of `marks`, in chain order, with whose time it is; then the
    supervisor's share (its segments summed per task) and the whole chain (DONE sent -> ACCEPTED handled)."""
    table: dict[str, Any] = {}
    for name, (start, end, whose) in SEGMENTS.items():
        table[name] = {"whose": whose, **dist_ms([m[end] - m[start] for m in marks.values()])}
    share = [sum(m[end] - m[start] for start, end, whose in SEGMENTS.values() if whose == "supervisor")
             for m in marks.values()]
    table["supervisor_share"] = {"whose": "supervisor", **dist_ms(share)}
    table["done_sent_to_started"] = {"whose": "all", **dist_ms([m["started"] - m["done_sent"]
                                                                   for m in marks.values()])}
    return table


def bench_latency(base: Path, chains: int, length: int, durable: bool = False) -> dict[str, Any]:
    swarm = Swarm(make_home(base, "latency", durable=durable), max_workers=chains)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        swarm.start()
        tasks = [no_op(f"c{c}-{i}", after=[f"c{c}-{i - 1}"] if i else []) for c in range(chains) for i in range(length)]
        t0 = time.time()
        load_onto_board(swarm.ledger, Plan(tasks=tasks))
        finished = wait_until(lambda: swarm.all_done() or swarm.error is not None, 240, BENCH_POLL)
        wall = time.time() - t0
        swarm.stop_supervisor()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        children_cpu = (children.ru_utime - children_before.ru_utime) + (children.ru_stime - children_before.ru_stime)
        events = swarm.events()
        created = by_type(events, EventType.TASK_CREATED)
        completed = by_type(events, EventType.TASK_COMPLETED)
        assigned = by_type(events, EventType.TASK_ASSIGNED)
        spawned = by_type(events, EventType.WORKER_SPAWNED)
        started = by_type(events, EventType.TASK_STARTED)
        accepted = mail_ts(swarm.home, "ACCEPTED")
        board = swarm.ledger.board()
        parts: dict[str, list[float]] = {k: [] for k in (
            "ready_to_started", "ready_to_assigned", "ready_to_spawned", "spawned_to_accepted_sent")}
        for task in tasks:
            tid = task.id
            if tid not in started or tid not in spawned or tid not in assigned:
                continue
            blocker = board[tid].blocked_by
            ready = (completed[blocker[0]] if blocker else created[tid]).ts.timestamp()
            parts["ready_to_started"].append(started[tid].ts.timestamp() - ready)
            parts["ready_to_assigned"].append(assigned[tid].ts.timestamp() - ready)
            parts["ready_to_spawned"].append(spawned[tid].ts.timestamp() - ready)
            if (msg := started[tid].detail.get("msg")) in accepted:
                parts["spawned_to_accepted_sent"].append(accepted[msg] - spawned[tid].ts.timestamp())
        p50, p99 = pct(parts["ready_to_started"], 50), pct(parts["ready_to_started"], 99)
        return {
            "chains": chains, "chain_length": length, "max_workers": chains, "durable": durable, "finished": finished,
            "wall_s": round(wall, 2), **outcome(events), "max_live_tasks": max_live(events),
            "events": len(events), "supervisor_steps": swarm.counts["steps"], "tmux_calls": swarm.counts["tmux_calls"],
            "ready_to_accepted": dist_ms(parts.pop("ready_to_started")),
            "supervisor_share_ready_to_spawned": dist_ms(parts.pop("ready_to_spawned")),
            "breakdown": {k: dist_ms(v) for k, v in parts.items()},
            "segments": segment_table(chain_marks(events, board, swarm.home)),
            # CPU is less at the mercy of a busy machine than latency: the supervisor thread's own, and that of
            # the processes it ran and waited for (tmux clients, git), per task.
            "supervisor_cpu_ms_per_task": round((swarm.thread_cpu_s or 0) / len(tasks) * 1000, 2),
            "supervisor_children_cpu_ms_per_task": round(children_cpu / len(tasks) * 1000, 2),
            "target_p50_under_ms": TARGET_DISPATCH_P50_MS,
            "target_p99_under_ms": TARGET_DISPATCH_P99_MS,
            "target_met": p50 is not None and p50 * 1000 < TARGET_DISPATCH_P50_MS and p99 * 1000 < TARGET_DISPATCH_P99_MS,
            **({"supervisor_error": repr(swarm.error)} if swarm.error else {}),
        }
    finally:
        swarm.close()


# ----- 3. throughput -----------------------------------------------------------------------------------------

def bare_baseline(count: int, parallel: int) -> float:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda _: subprocess.run(["sh", "-c", "true"], check=True), range(count)))
    return time.perf_counter() - t0


def bench_throughput(base: Path, count: int, parallel: int) -> dict[str, Any]:
    bare = bare_baseline(count, parallel)
    bare_tmux = bench_floors.bare_tmux_tasks(base / "bare-tmux-tasks.sock", count, parallel)
    swarm = Swarm(make_home(base, "throughput"), max_workers=parallel)
    try:
        swarm.start()
        t0 = time.time()
        load_onto_board(swarm.ledger, Plan(tasks=[no_op(f"n{i}") for i in range(count)]))
        finished = wait_until(lambda: swarm.all_done() or swarm.error is not None, 300, BENCH_POLL)
        events = swarm.events()
        done = [e.ts.timestamp() for e in events if e.type == EventType.TASK_COMPLETED]
        ours = (max(done) - t0) if finished else time.time() - t0
        sessions_left, pool_left = len(swarm.worker_sessions()), swarm.pool_panes()
        counts = dict(swarm.counts)
        swarm.stop_supervisor()
        # Worker start-up (worker_spawned -> its ACCEPTED sent) for the first and the last tasks spawned.
        accepted = mail_ts(swarm.home, "ACCEPTED")
        started = by_type(events, EventType.TASK_STARTED)
        spawned = sorted(by_type(events, EventType.WORKER_SPAWNED).values(), key=lambda e: e.seq)
        startup = [accepted[started[e.task].detail["msg"]] - e.ts.timestamp() for e in spawned
                   if e.task in started and started[e.task].detail.get("msg") in accepted]
        tenth = max(1, len(startup) // 10)
        probe_big = probe_worker(swarm.home, "probe")
        return {
            "tasks": count, "max_workers": parallel, "finished": finished,
            "swarm_wall_s": round(ours, 2), "bare_wall_s": round(bare, 3),
            "ratio": round(ours / bare, 1),
            "floor_bare_tmux_loop_s": round(bare_tmux, 3), "ratio_to_bare_tmux_loop": round(ours / bare_tmux, 2),
            "overhead_per_task_ms": round((ours - bare) / count * 1000, 1),
            "overhead_per_task_worker_slot_ms": round((ours - bare) / count * parallel * 1000, 1),
            "tasks_per_s": round(count / ours, 2),
            **outcome(events), "max_live_tasks": max_live(events), "max_workers_respected": max_live(events) <= parallel,
            "worker_sessions_left": sessions_left, "pool_panes_left": pool_left,
            "events": len(events), "supervisor_steps": counts["steps"], "tmux_calls": counts["tmux_calls"],
            "tmux_calls_per_task": round(counts["tmux_calls"] / count, 1),
            "worker_startup_first_10pct": dist_ms(startup[:tenth]),
            "worker_startup_last_10pct": dist_ms(startup[-tenth:]),
            "probe_worker_run_true_s": probe_big,
            **({"supervisor_error": repr(swarm.error)} if swarm.error else {}),
        }
    finally:
        swarm.close()


def probe_worker(home: SwarmHome, label: str, runs: int = 3) -> dict[str, Any]:
    """`python -m swarmd worker run --script` of a `true` task, run by hand in `home` (its supervisor stopped):
    the wall time of one whole no-op worker, against this home's ledger as it is."""
    from swarmd.ledger.log import Ledger

    ledger = Ledger(home, durable=False)
    events_before = ledger.last_seq()
    times = []
    for n in range(runs):
        agent = f"{label}{n}"
        ledger.add_task(no_op(agent), "operator")
        env = {**os.environ, "SWARM_HOME": str(home.root), "SWARM_AGENT": agent, "SWARM_TASK": agent}
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "swarmd", "worker", "run", "--script"], env=env, check=True,
                       capture_output=True)
        times.append(time.perf_counter() - t0)
    return {"ledger_events": events_before, "median_s": round(statistics.median(times), 3),
            "min_s": round(min(times), 3)}


# ----- worker start-up ---------------------------------------------------------------------------------------

def _median_run(argv: list[str], runs: int, env: dict[str, str] | None = None, check: bool = True) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=check, env=env)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_worker_startup(base: Path, runs: int = 7) -> dict[str, Any]:
    py = sys.executable
    home = make_home(base, "probe")
    from agentmail import PostOffice

    PostOffice(home.root, durable=False).register(SUPERVISOR, role="supervisor")
    probe_fresh = probe_worker(home, "probe")
    result: dict[str, Any] = {
        "python_bare_s": _median_run([py, "-c", "pass"], runs),
        "import_swarmd_worker_s": _median_run([py, "-c", "import swarmd.worker"], runs),
        "cli_worker_run_help_s": _median_run([py, "-m", "swarmd", "worker", "run", "--help"], runs),
        # what a pane starts when the fork server runs: the client alone (here it only prints its usage)
        "pane_client_s": _median_run([py, "-I", "-S", str(CLIENT)], runs, check=False),
        "agentmail_cli_help_s": _median_run([str(Path(py).parent / "agentmail"), "--help"], runs)
        if (Path(py).parent / "agentmail").exists() else None,
    }
    result = {k: round(v, 3) for k, v in result.items() if v is not None}
    result["probe_worker_run_true_fresh_home_s"] = probe_fresh
    # Where the import time goes: top-level imports of `python -m swarmd worker run --help` by cumulative time.
    proc = subprocess.run([py, "-X", "importtime", "-m", "swarmd", "worker", "run", "--help"],
                          capture_output=True, text=True, check=True)
    cumulative: dict[str, float] = {}
    self_us: dict[str, int] = {}
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if m:
            self_us[m[4]] = int(m[1])
            if m[3] in (" ", "  ", "   "):  # depth 1-2: what the entry point pulls in
                cumulative[m[4]] = max(cumulative.get(m[4], 0), int(m[2]) / 1000)
    totals = {name: ms for name, ms in cumulative.items()}
    result["importtime_total_ms"] = round(sum(self_us.values()) / 1000, 1)
    result["importtime_top_ms"] = {k: round(v, 1) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])[:12]}
    heavy = ("pydantic", "click", "rich", "watchdog", "filelock", "libtmux")
    result["heavy_packages_ms"] = {p: round(sum(v for k, v in self_us.items() if k == p or k.startswith(p + "."))
                                            / 1000, 1) for p in heavy}
    return result


def targets(result: dict[str, Any]) -> dict[str, bool | None]:
    """Each goal of the issue: met (True), missed (False) or not measured in this run (None)."""
    commands, idle = result.get("commands", {}), result.get("idle")
    throughput = result.get("throughput", {}).get("ratio_to_bare_tmux_loop")
    return {
        f"spawn_{result.get('spawn', {}).get('workers', 50)}_accepted_under_{TARGET_SPAWN_S:g}s":
            result.get("spawn", {}).get("target_met"),
        f"ready_to_accepted_p50_under_{TARGET_DISPATCH_P50_MS:g}ms_p99_under_{TARGET_DISPATCH_P99_MS:g}ms":
            result.get("dispatch_latency", {}).get("target_met"),
        f"throughput_within_{TARGET_THROUGHPUT_RATIO:g}x_bare_tmux_loop":
            None if throughput is None else throughput <= TARGET_THROUGHPUT_RATIO,
        **{f"{name.replace(' ', '_').replace('-', '')}_within_{TARGET_COMMAND_RATIO:g}x_python":
           figures["ratio_wall"] <= TARGET_COMMAND_RATIO
           for name, figures in commands.items() if isinstance(figures, dict)},
        "worker_imports_no_pydantic_click_rich":
            None if "worker_process" not in result else not result["worker_process"]["heavy_packages_imported"],
        f"idle_supervisor_under_{TARGET_IDLE_CPU_PCT:g}pct_cpu_{TARGET_IDLE_RSS_MB:g}mb":
            None if idle is None else idle["supervisor_cpu_pct_with_its_tmux_calls"] < TARGET_IDLE_CPU_PCT
            and idle["supervisor_rss_mb"] < TARGET_IDLE_RSS_MB,
        f"worker_overhead_under_{TARGET_WRAPPER_RSS_MB:g}mb_pss":
            None if not idle or idle["worker_pss_mb_max"] is None else idle["worker_pss_mb_max"] < TARGET_WRAPPER_RSS_MB,
    }


# ----- main --------------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spawn", type=int, default=50)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--chain-length", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=16)
    parser.add_argument("--idle-workers", type=int, default=100)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--only", choices=SECTIONS, action="append")
    parser.add_argument("--durable", action="store_true",
                        help="run the latency section's swarm with durable = true (every ledger write and mail fsynced)")
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        sys.exit("bench_swarm: tmux is not installed")
    only = set(args.only or SECTIONS)
    base = Path(tempfile.mkdtemp(prefix="swarm-bench-", dir="/tmp"))
    result: dict[str, Any] = {"durable": args.durable and only == {"latency"}, "cpus": os.cpu_count(),
                              "tmux": subprocess.run(["tmux", "-V"], capture_output=True, text=True).stdout.strip(),
                              "python": sys.version.split()[0], "loadavg_before": os.getloadavg()}
    t0 = time.perf_counter()
    try:
        if "startup" in only:
            result["worker_startup"] = bench_worker_startup(base)
            result["worker_startup_s"] = result["worker_startup"]["cli_worker_run_help_s"]
        if "spawn" in only:
            result["spawn_supervisor_only"] = bench_spawn_bare(base, args.spawn)
            result["spawn"] = bench_spawn(base, args.spawn)
        if "latency" in only:
            result["dispatch_latency"] = bench_latency(base, args.chains, args.chain_length, args.durable)
        if "throughput" in only:
            result["throughput"] = bench_throughput(base, args.tasks, args.parallel)
        if "commands" in only:
            result["commands"] = bench_floors.bench_commands(base / "commands" / ".swarm")
            result["worker_process"] = bench_floors.bench_worker_process(base / "worker-process")
        if "idle" in only:
            result["idle"] = bench_floors.idle_supervisor(base / "idle" / ".swarm", args.idle_workers,
                                                          args.idle_seconds)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if "latency" in only:
        lat = result["dispatch_latency"]
        result["worker_startup_in_swarm_p50_s"] = round(
            lat["breakdown"]["spawned_to_accepted_sent"].get("p50_ms", 0) / 1000, 3)
    result["targets"] = targets(result)
    result["loadavg_after"] = os.getloadavg()
    result["bench_total_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

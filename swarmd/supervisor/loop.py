"""The supervisor: assigns ready tasks to tmux workers in waves and reacts to their mail and their panes.

One thread does all the work (`step`); mail arrival, ledger changes and finished validations only wake it.
All state worth keeping is in the ledger, so a restarted supervisor rebuilds itself from there.
"""

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from datetime import datetime
from pathlib import Path

from agentmail import FileTransport, PostOffice
from agentmail.errors import TransportUnavailable
from protocol.agent import AgentStatus
from protocol.event import EventType
from protocol.ids import utcnow
from protocol.task import Task
from swarmd.config import Config, load_config
from swarmd.errors import ConfigError, LedgerError, SwarmError
from swarmd.git.queue import MergeOutcome, QueueEntry
from swarmd.git.worktrees import AttemptTree
from swarmd.home import SwarmHome, make_private_dir
from swarmd.hosts.client import HostsClient
from swarmd.hosts.wire import HostEvent
from swarmd.integrations.planning import PlanningTools
from swarmd.ledger.log import Ledger
from swarmd.ledger.registry import LIVE_STATUSES as LIVE_AGENTS
from swarmd.skills import SkillHub
from swarmd.supervisor.agentstates import AgentStates
from swarmd.supervisor.dispatch import Dispatch
from swarmd.supervisor.health import Health
from swarmd.supervisor.integration import Integration, new_merge_pool
from swarmd.supervisor.notify import Notifier
from swarmd.supervisor.outage import MailOutage
from swarmd.supervisor.outcomes import Outcomes
from swarmd.supervisor.queues import Deliveries, Queues
from swarmd.supervisor.reactions import MailReactions
from swarmd.supervisor.recovery import Recovery
from swarmd.supervisor.remote import RemoteWorkers
from swarmd.supervisor.remotetrees import RemoteTrees
from swarmd.supervisor.repeats import RepeatedErrors
from swarmd.supervisor.retention import prune_if_due
from swarmd.supervisor.settings import read_settings
from swarmd.supervisor.shell import kill_all as kill_running_commands
from swarmd.supervisor.state import STOP_GRACE, SUPERVISOR, ValidationResult, WorkerState
from swarmd.watch import watch_file
from swarmd.workers.forkserver import ForkServer
from swarmd.workers.warmpanes import WarmPanes
from swarmd.workers.panestate import PaneWatcher
from swarmd.workers.spawner import Spawner
from swarmd.workers.tmux import TmuxServer

log = logging.getLogger("swarmd.supervisor")
MIN_SLEEP = 0.005  # seconds: a deadline just reached is passed by the time the next step looks at it
FORK_SERVER_WAIT = 3.0  # seconds the supervisor waits at start for its fork server to listen


class Supervisor(Recovery, MailReactions, AgentStates, Outcomes, Health, Queues, Dispatch, Integration, RemoteWorkers,
                 RemoteTrees, MailOutage):
    """One swarm home's supervisor: `serve()` runs `step()` until stopped; its parts (recovery, mail, outcomes,
    health, queued prompts, dispatch) are mixins in modules of their own, all over the state set up here.

    Raises `ConfigError` from the constructor when swarm.toml is invalid.
    """

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
        if not isinstance(self.post.transport, FileTransport) and "operator" not in self.post.agents():
            self.post.register("operator", role="operator")  # `swarm init` made it on files, not on JetStream
        self.workers: dict[str, WorkerState] = {}
        self.watchers: dict[str, PaneWatcher] = {}  # interactive worker -> its pane watcher (see Queues)
        self.helpers: dict[str, str] = {}  # helper name -> the task it helps with
        self.budget_noted = False  # the feed has said that the budget is spent
        self.finishing: dict[str, tuple[str, float]] = {}  # released worker -> (session, monotonic deadline)
        self.wake = threading.Event()
        self.deliveries = Deliveries(self.wake.set)  # prompts on their way into panes, off the step thread
        self.stopping = threading.Event()
        self.results: queue.SimpleQueue[ValidationResult] = queue.SimpleQueue()
        self.checks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="validate")
        self.hooks = ThreadPoolExecutor(max_workers=2, thread_name_prefix="hook")  # never delays a validation
        self.endings = ThreadPoolExecutor(max_workers=1, thread_name_prefix="end-sessions")  # see end_sessions
        self.planning = PlanningTools(self.ledger)
        self.trees: dict[str, AttemptTree] = {}  # task -> its live attempt's worktree
        self.merge_queue: list[QueueEntry] = []  # validated attempts waiting to land
        self.merging: QueueEntry | None = None
        self.merge_results: queue.SimpleQueue[MergeOutcome] = queue.SimpleQueue()
        self.merges = new_merge_pool()
        self.merge_errors: dict[str, int] = {}
        self._next_worker = 1
        self._mail_tries: dict[str, int] = {}  # message id -> failed tries at handling it
        self.mail_read_at: datetime | None = None  # when the step last read its mailbox (see MailReactions)
        self.errors = RepeatedErrors(log)
        self.skills = SkillHub(home)
        self._skills_version = self.skills.version()
        self.notifier: Notifier | None = None  # started once swarm.toml has a [notify] command or webhook
        self.pane_event = threading.Event()  # a worker's pane may have ended: its exit file says (Health.look)
        self.pane_hook_event = threading.Event()  # tmux's pane-died hook fired: the panes are listed
        self.panes_seen_at = float("-inf")  # monotonic seconds of the last look at the panes
        self.recheck_panes = False  # a dead pane awaits its exit status: look again at the next tick
        # workdir -> (its discovery marks, its repository with a commit): see Integration._repository_with_commits
        self.git_tops: dict[Path, tuple[tuple[bool, tuple[tuple[Path, int], ...]], Path | None]] = {}
        self.remote: HostsClient | None = None  # the worker hosts' link, with `[hosts] url` (see RemoteWorkers)
        self.hosts_down: set[str] = set()
        self.hosts_missing: dict[str, float] = {}
        self.stops_sent: set[str] = set()
        self.host_bases: dict[str, list[str]] = {}  # host -> base commits it holds (see RemoteTrees)
        self.bases_sent: dict[str, str] = {}  # worker -> the base sent to its host, until the host started it
        self.homecoming: dict[str, HostEvent] = {}  # worker -> its DONE's event, whose branch its validation fetches
        self.mail_down = False  # the mail transport's connection was down at the last look (see MailOutage)
        self._step_thread: int | None = None  # the thread `serve` runs on (see _ledger_written)
        self.warm_panes: WarmPanes | None = None  # sessions started ahead of need (swarm.toml's `warm_panes`)

    # ----- life cycle -------------------------------------------------------------------------------------
    @property
    def max_workers(self) -> int:
        return self.max_workers_override or read_settings(self.home).get("max_workers") or self.config.max_workers

    def max_attempts(self, task: Task) -> int:
        return task.max_attempts or self.config.max_attempts

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def start_fork_server(self) -> None:
        """Start the fork server workers start through (swarm.toml's `fork_server`), waiting briefly for it to
        listen; without it, each pane starts its own interpreter."""
        if not self.config.fork_server or self.spawner.forkserver is not None:
            return
        try:
            self.spawner.forkserver = ForkServer(self.home.root).start()
        except OSError as exc:
            log.warning("no fork server (%s): each worker starts its own interpreter", exc)
            return
        self.spawner.forkserver.ready(timeout=FORK_SERVER_WAIT)

    def start_warm_panes(self) -> None:
        """Start the pool of panes workers start in and leave for the next (with the fork server only); it keeps
        swarm.toml's `warm_panes` started ahead of need."""
        if self.spawner.forkserver is None or self.warm_panes is not None:
            return
        try:
            self.warm_panes = WarmPanes(self.home.root, self.tmux, self.spawner.forkserver.address,
                                        swarm=self.config.name, size=self.config.warm_panes,
                                        keep=lambda: self.max_workers, wake_file=self.spawner.pane_died_file,
                                        on_exit=self.spawner.on_exit).run()
            self.spawner.pool_address = self.warm_panes.address
        except OSError as exc:
            log.warning("no warm panes (%s): each worker starts in a new session", exc)

    def worker_up(self, worker: WorkerState) -> None:
        """`worker` has said ACCEPTED (or ended): the warm pool may start panes again (`WarmPanes.settled`)."""
        if self.warm_panes is not None and not worker.host:
            self.warm_panes.settled(worker.session)

    def pooled(self, session: str) -> bool:
        """Whether the pane pool takes `session`'s pane back when its worker exits 0 (`WarmPanes.holds`)."""
        return self.warm_panes is not None and self.warm_panes.holds(session)

    def stop_warm_panes(self) -> None:
        if self.warm_panes is not None:
            self.spawner.pool_address = None
            self.warm_panes.stop()
            self.warm_panes = None

    def run(self) -> None:
        """Recover, then serve until stopped."""
        self.recover()
        self.serve()

    def serve(self) -> None:
        """Loop until stopped: every wake-up (mail, a ledger write, a check's result) or tick runs one step."""
        self._step_thread = threading.get_ident()
        arrivals = self.mailbox.on_arrival(self.wake.set)
        ledger_watch = watch_file(self.ledger.path, self._ledger_written)
        pane_watch = watch_file(self.spawner.pane_died_file, self._pane_died)
        hook_watch = watch_file(self.spawner.pane_hook_file, self._pane_hook)
        make_private_dir(self.skills.root)
        skills_watch = watch_file(self.skills.version_file, self.wake.set)
        self.start_notifier()
        self.start_hosts()
        self.start_fork_server()
        self.start_warm_panes()
        self.fail_fast_mail()
        try:
            while not self.stopping.is_set():
                self.guarded_step()
                if self.ledger.others_wrote:  # another wrote between two of our appends: look again at once
                    self.ledger.others_wrote = False
                    self.wake.set()
                self.ledger.heartbeat(SUPERVISOR)
                self.wake.wait(self._sleep())
                self.wake.clear()
            self._let_released_finish(STOP_GRACE)
        finally:
            arrivals.stop()
            ledger_watch.stop()
            pane_watch.stop()
            hook_watch.stop()
            skills_watch.stop()
            if self.notifier is not None:
                self.notifier.stop()
            self.checks.shutdown(wait=False, cancel_futures=True)
            self.hooks.shutdown(wait=False, cancel_futures=True)
            self.endings.shutdown(wait=True)  # the sessions it was asked to end are gone before we are
            self.deliveries.stop()
            self.merges.shutdown(wait=False, cancel_futures=True)
            kill_running_commands()  # a restart checks again; no check or hook outlives its supervisor
            self.stop_hosts()
            self.stop_warm_panes()
            if self.spawner.forkserver is not None:
                self.spawner.forkserver.stop()
            self._mark_agent(SUPERVISOR, AgentStatus.STOPPED)
            self.ledger.append(EventType.SUPERVISOR_STOPPED, SUPERVISOR, summary="supervisor stopped",
                               workers=sorted(self.workers))

    def end_sessions(self, sessions: list[str]) -> None:
        """Kill `sessions` (released workers' that have exited or outstayed their grace) on a thread of their
        own, in one tmux call: the step goes on meanwhile (a session's name is never used again, so nothing
        waits on its end)."""
        if sessions:
            self.endings.submit(self._end_sessions, sessions)

    def _end_sessions(self, sessions: list[str]) -> None:
        try:
            self.tmux.kill_sessions(sessions)
        except SwarmError as exc:
            log.warning("could not end sessions %s: %s", ", ".join(sessions), exc)

    def _ledger_written(self) -> None:
        """A write to the ledger wakes the loop, unless it was the step's own (the step knows what it wrote). A
        write by another that came between two of the step's is caught at the second (`Ledger.others_wrote`)."""
        if self._step_thread is None or not self.ledger.ends_with_append_by(self._step_thread):
            self.wake.set()

    def _pane_hook(self) -> None:
        self.pane_hook_event.set()
        self.wake.set()

    def _pane_died(self) -> None:
        self.pane_event.set()
        self.wake.set()

    def _sleep(self) -> float:
        """Seconds until the next step is due if nothing wakes the loop before (see `Health.next_due`); at most a
        safety period (a heartbeat interval): a step also takes up a changed swarm.toml or `swarm run
        --max-workers`, retention, and touches the supervisor's own heartbeat."""
        try:
            due = self.next_due()
        except Exception:  # noqa: BLE001 - a failed reckoning must not stop the loop: step again after a tick
            log.exception("could not reckon the next step's time")
            return self.config.tick
        return min(max(due - self.monotonic(), MIN_SLEEP), self.safety_period())

    def start_notifier(self) -> None:
        """Start notifications (threads of their own: a slow receiver never holds up a step) once `[notify]`
        names a command or a webhook; until then nothing follows the ledger for them."""
        if self.notifier is None and (self.config.notify.command or self.config.notify.webhook):
            self.notifier = Notifier(self.home, lambda: self.config.notify, durable=self.config.durable)
            self.notifier.start()

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
        """One round of the loop's duties. Dispatch comes right after the mail and the results that can make a
        task ready (a DONE validated, a merge landed), before the looks at panes and queues (each may wait on a
        tmux call); it comes again after them only if they changed the ledger (a failed attempt frees a slot)."""
        self.reload_config()
        mail = self.mail_reachable()
        if mail:
            try:
                self.handle_mail()
            except TransportUnavailable:  # the server went down meanwhile: the rest of the step goes on
                mail = False
        self.handle_hosts()
        self.handle_validations()
        self.handle_merges()
        self._dispatch_unless_stopping(mail)
        appended = self.ledger.appended
        self.check_workers()
        self.flush_queues()
        self.watch_panes()
        if self.ledger.appended != appended:
            self._dispatch_unless_stopping(mail)
        self.planning.on_step()
        self.sync_skills()
        prune_if_due(self.home, self.config, self.ledger, self.clock())  # old logs and mail: at most once a minute

    def _dispatch_unless_stopping(self, mail: bool) -> None:
        """Dispatch, unless stopping or mail cannot be used (down when the step began, or since: each attempt
        starts with its assignment mail)."""
        if mail and self.mail_reachable() and not self.stopping.is_set():
            self.dispatch()

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
        hosts_changed = config.hosts != self.config.hosts
        self.config = self.spawner.config = config
        self.ledger.durable, self.ledger.stale_after = config.durable, config.stale_after
        self.ledger.append(EventType.CUSTOM, SUPERVISOR, summary="swarm.toml changed: settings reloaded")
        self.start_notifier()
        if hosts_changed:
            self.restart_hosts()

    def sync_skills(self) -> None:
        """A changed skills hub is mirrored into every live agent's skills directory, and said in the feed."""
        version = self.skills.version()
        if version == self._skills_version:
            return
        self._skills_version = version
        synced = self.skills.sync_live(n for n, e in self.ledger.registry().items() if e.status in LIVE_AGENTS)
        names = [s.name for s in self.skills.skills()]
        self.ledger.append(EventType.CUSTOM, SUPERVISOR, summary=f"skills hub changed: {len(names)} skills "
                           f"mirrored into {len(synced)} workers", skills=names, workers=synced)

    # ----- recovery ---------------------------------------------------------------------------------------


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What tells a changed file from the one read before: (inode, size, mtime in ns); None if it is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns

"""What the supervisor holds about each worker and each validation, and the limits of its loop."""

from dataclasses import dataclass
from datetime import datetime

from swarmd.supervisor.validation import ValidationReport

SUPERVISOR = "supervisor"
EXIT_STATUS_GRACE = 2.0  # seconds to wait for tmux to report a dead pane's exit status
MAIL_BATCH = 256  # messages handled in one step; the rest of a backlog waits for the step's other duties
STOP_GRACE = 10.0  # seconds a stopping supervisor gives released workers to exit (less than `swarm down` waits)
MAX_HANDLE_TRIES = 3  # steps that may fail to handle one message before it is set aside in bad/


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
    asked_to_report: bool = False  # an interactive agent went idle without reporting and was asked to, once
    paused_since: float | None = None  # monotonic seconds when its agent hit a usage limit (None: not paused)
    resume_at: float | None = None  # monotonic seconds when that limit resets and it is told to continue
    paused_for: float = 0.0  # seconds it spent paused by usage limits: its timeout and stale checks leave them out
    host: str = ""  # the worker host it runs on ("": this machine)
    remote_beat: datetime | None = None  # on a host: its heartbeat as the host last reported it (the host's clock)
    start: str = ""  # on a host: the id of the start order, which the host's events must echo ("": not known)
    reset_unknown: bool = False  # paused without a reset time (for `rate_limit_wait`): a later report may give it
    asked_about: int | None = None  # the seq of the `question` for the dialog it waits on (None: none open)
    looked_at: float = 0.0  # monotonic seconds of the supervisor's last look at its pane (interactive agents)
    limit_looks: int = 0  # looks in a row whose screen showed a usage-limit notice
    dialog_looks: int = 0  # looks since its hook said it waits on a dialog not drawn yet (0: none pending)
    adopted: bool = False  # taken over from a supervisor that died (see Health._pane_ended)


@dataclass
class ValidationResult:
    task: str
    worker: str
    report: ValidationReport | None
    error: str = ""  # the checks could not run at all
    refused: str = ""  # why the work was refused: by a planning tool (OL's ratchet) after its checks passed, or
    # before any check, when a remote attempt's branch could not be brought home from its host (report None)
    commit: str | None = None  # the attempt's branch tip when its checks ran (isolated attempts only)



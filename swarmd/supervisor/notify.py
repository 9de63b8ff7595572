"""Notifications: tell a person (a command such as `notify-send` or `ntfy`, a webhook) when the swarm needs one.

Threads of their own, so the supervisor's loop never waits on a receiver: a follower reads the ledger as it
grows (the same file watching as `swarm feed --follow`) and queues a `Notification` for each event
`[notify]` selects; a sender per channel (command, webhook) delivers them in order, each tried again with
doubling backoff, and a delivery that keeps failing becomes a `custom` event in the feed. The seq of the
last event queued is kept in `run/notify.json`: a restarted supervisor goes on after it, so what happened
while it was down is told and nothing is told twice (one still queued when it stopped is lost).
"""

import json
import logging
import os
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from protocol.event import Event, EventType
from protocol.task import FINAL_STATUSES, AttemptOutcome, TaskStatus
from swarmd.config import Notify
from swarmd.errors import LedgerError
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.supervisor.shell import run_shell
from swarmd.supervisor.state import SUPERVISOR

log = logging.getLogger("swarmd.notify")
NEEDS_INPUT = "needs_input"
CHANNELS = ("command", "webhook")


@dataclass(frozen=True)
class Notification:
    """What a person is told: the kind of `event` (one of `[notify]`'s events), the worker and task it is
    about, why, and the action to take; with the ledger event's `seq`, `summary` and time."""

    event: str
    worker: str | None
    task: str | None
    reason: str
    action: str
    summary: str
    seq: int
    ts: str
    home: str

    def as_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()


def classify(event: Event) -> tuple[str, str | None, str, str] | None:
    """(kind, worker, reason, action) if `event` is one a person may want to hear of, else None. `plan_done`
    needs the board, and a repeated needs_input the worker's last state: see `Notifier`."""
    detail, task = event.detail, event.task
    worker = str(detail.get("worker") or detail.get("name") or event.agent)
    if agent_state(detail) == NEEDS_INPUT:
        return NEEDS_INPUT, worker, _state_detail(detail) or event.summary, \
            f"look at its pane: swarm attach {worker} (or the dashboard)"
    if event.type == EventType.QUESTION and detail.get("kind") != "dialog":  # a dialog: needs_input above
        reason = str(detail.get("question") or detail.get("problem") or event.summary)
        return "question", event.agent, reason, f"answer it: swarm reply {event.agent} 'ANSWER'"
    if event.type == EventType.BLOCKER_FOUND:
        return "blocker_found", event.agent, event.summary, f"steer it: swarm steer {event.agent} 'TEXT'"
    if detail.get("status") == TaskStatus.BLOCKED and task:
        reason = str(detail.get("reason") or event.summary)
        return "task_blocked", worker, reason, f"fix the cause, then: swarm retry {task}"
    if event.type == EventType.TASK_FAILED and task and detail.get("outcome") != AttemptOutcome.ABANDONED:
        reason = str(detail.get("reason") or event.summary)
        return "task_failed", worker, reason, f"none yet: another attempt follows (see swarm logs {worker})"
    return None


def agent_state(detail: dict[str, Any]) -> str | None:
    """The agent state an event reports, if any: `state` in its detail, or in an agent update's fields (the
    registry entry's `metadata.agent_state`, which the agents' hooks keep)."""
    fields = detail.get("fields") if isinstance(detail.get("fields"), dict) else {}
    metadata = fields.get("metadata") if isinstance(fields.get("metadata"), dict) else {}
    state = detail.get("state") or fields.get("state") or metadata.get("agent_state")
    return str(state) if state else None


def _state_detail(detail: dict[str, Any]) -> str:
    fields = detail.get("fields") if isinstance(detail.get("fields"), dict) else {}
    metadata = fields.get("metadata") if isinstance(fields.get("metadata"), dict) else {}
    return str(detail.get("dialog") or metadata.get("state_detail") or "")


class Notifier:
    """Follows the ledger of `home` and delivers what `settings()` (the live `[notify]` table) selects.

    `start()` and `stop()` from the supervisor's thread; everything else runs on the notifier's own two."""

    def __init__(self, home: SwarmHome, settings: Callable[[], Notify], *, durable: bool = True) -> None:
        self.home = home
        self.settings = settings
        self.ledger = Ledger(home, durable=durable)  # the follower's (its board is folded as events come)
        self.reports = Ledger(home, durable=durable)  # the senders' (appends serialize on the ledger's lock)
        self.state_file = home.run_dir / "notify.json"
        self.outboxes: dict[str, queue.SimpleQueue[Notification | None]] = {
            channel: queue.SimpleQueue() for channel in CHANNELS}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._plan_open = False  # some task is open or live: the plan is not done yet
        self._states: dict[str, str] = {}  # each worker's last reported agent state

    def start(self) -> None:
        since = self._saved_seq()
        self._plan_open = self._some_task_open()
        self._threads = [threading.Thread(target=self._follow, args=(since,), name="notify-follow", daemon=True)]
        self._threads += [threading.Thread(target=self._send_all, args=(channel,), name=f"notify-{channel}",
                                           daemon=True) for channel in CHANNELS]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the threads; a delivery waiting on its backoff gives up (and is reported in the feed)."""
        self._stop.set()
        for outbox in self.outboxes.values():
            outbox.put(None)
        for thread in self._threads:
            thread.join(timeout)

    # ----- the follower ----------------------------------------------------------------------------------
    def _follow(self, since: int) -> None:
        for event in self.ledger.follow(since_seq=since, stop=self._stop):
            try:
                self.look_at(event)
            except Exception:  # noqa: BLE001 - one odd event must not end notifications
                log.exception("could not look at event %s for notifications", event.seq)

    def look_at(self, event: Event) -> None:
        """Queue the notifications `event` calls for that `[notify]` selects (on the follower thread): its own
        kind, and `plan_done` when it settles the last open task."""
        settings = self.settings()
        found = [classify(event)]
        if (state := agent_state(event.detail)) is not None:
            worker = str(event.detail.get("worker") or event.detail.get("name") or event.agent)
            if self._states.get(worker) == state:  # still in the state it was (its usage grew): said already
                found = []
            self._states[worker] = state
        if "status" in event.detail or event.type == EventType.TASK_CREATED:
            found.append(self._plan_done())
        for kind, worker, reason, action in filter(None, found):
            if kind not in settings.events:
                continue
            note = Notification(kind, worker, event.task, reason, action, event.summary, event.seq,
                                event.ts.isoformat(), str(self.home.root))
            for channel, target in (("command", settings.command), ("webhook", settings.webhook)):
                if target:
                    self.outboxes[channel].put(note)
                    self._save_seq(event.seq)

    def _plan_done(self) -> tuple[str, str | None, str, str] | None:
        """`plan_done` once, when the last open or live task settles (armed again by any task reopening), as the
        board is when the event is read (the follower runs milliseconds behind the log)."""
        was_open, self._plan_open = self._plan_open, self._some_task_open()
        if not was_open or self._plan_open:
            return None
        counts: dict[str, int] = {}
        for task in self.ledger.board().values():
            counts[task.status.value] = counts.get(task.status.value, 0) + 1
        reason = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        return "plan_done", None, f"no task is open or running: {reason}", "see the board: swarm board"

    def _some_task_open(self) -> bool:
        return any(t.status not in FINAL_STATUSES for t in self.ledger.board().values())

    def _saved_seq(self) -> int:
        try:
            return int(json.loads(self.state_file.read_text())["seq"])
        except (OSError, ValueError, KeyError, TypeError):
            return self.ledger.last_seq()

    def _save_seq(self, seq: int) -> None:
        tmp = self.state_file.with_name(f"notify.json.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"seq": seq}, f)
        os.replace(tmp, self.state_file)

    # ----- the senders: one a channel, so a receiver that hangs holds up no other ---------------------------
    def _send_all(self, channel: str) -> None:
        outbox = self.outboxes[channel]
        while (note := outbox.get()) is not None:
            try:
                self.deliver(note, channel, self.settings())
            except Exception:  # noqa: BLE001 - the sender outlives one bad delivery
                log.exception("notification %s (seq %s) could not be sent by %s", note.event, note.seq, channel)

    def deliver(self, note: Notification, channel: str, settings: Notify) -> bool:
        """Send `note` by `channel` ("command" or "webhook"), tried 1 + `settings.retries` times, waiting
        `backoff` seconds, then twice as long each time (cut short by `stop()`). A delivery that never
        succeeds is put in the feed. True if it was delivered (or the channel is no longer configured)."""
        target = settings.command if channel == "command" else settings.webhook
        if not target:
            return True
        tries, error = 0, "stopped"
        while tries <= settings.retries:
            if tries and self._stop.wait(settings.backoff * 2 ** (tries - 1)):
                break
            tries += 1
            if channel == "command":
                failed = _run_command(target, note, self.home, settings.timeout)
            else:
                failed = _post(target, note, settings.timeout)
            if failed is None:
                return True
            error = failed
        self._report(note, channel, error, tries)
        return False

    def _report(self, note: Notification, channel: str, error: str, tries: int) -> None:
        log.warning("notification %s by %s failed after %d tries: %s", note.event, channel, tries, error)
        try:
            self.reports.append(EventType.CUSTOM, SUPERVISOR, note.task, summary=(
                f"notification {note.event} by {channel} failed after {tries} tries: {error}")[:300],
                notify_failed=note.event, channel=channel, about_seq=note.seq)
        except LedgerError:
            pass  # the log says it; the ledger cannot


def _run_command(command: str, note: Notification, home: SwarmHome, timeout: float) -> str | None:
    """Run the notify command with the JSON on stdin; None if it exited 0, else why not."""
    env = {**os.environ, "SWARM_HOME": str(home.root), "SWARM_NOTIFY_EVENT": note.event,
           "SWARM_NOTIFY_WORKER": note.worker or "", "SWARM_NOTIFY_TASK": note.task or ""}
    try:
        result = run_shell(command, cwd=home.root, env=env, timeout=timeout, stdin=note.as_json())
    except OSError as exc:
        return f"cannot start it: {exc.strerror or exc}"
    if result.timed_out:
        return f"timed out after {timeout:g} s"
    if result.returncode != 0:
        tail = result.tail.strip().splitlines()[-1:] or [""]
        return f"exit {result.returncode}" + (f": {tail[0][:200]}" if tail[0] else "")
    return None


def _post(url: str, note: Notification, timeout: float) -> str | None:
    """POST the JSON to the webhook; None on a 2xx answer, else why not."""
    request = urllib.request.Request(url, data=note.as_json(), method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "swarmd-notify"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the operator's URL
            response.read(1024)
            return None if 200 <= response.status < 300 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"cannot reach it: {getattr(exc, 'reason', exc)}"

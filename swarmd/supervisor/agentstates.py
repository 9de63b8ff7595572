"""The supervisor's reaction to AGENT_STATE mail (a worker's agent hooks report what it does): the state goes
into the registry entry's metadata (so `swarm status`, the registry and the feed show it), and a change in the
agent's own usage records becomes a `cost_update` event carrying the difference. An agent that hit a usage limit
is paused (not failed) until the limit resets, then told to continue; the pause is in the registry too
(`paused_until`, `paused_at`, `paused_for`), so a restarted supervisor takes it up again. An agent waiting on a
dialog is `needs_input`, with the dialog's text and options, and a `question` in the feed.

The pane is the fallback for what the hooks may not say: each interactive agent's pane is looked at about once
a second (`watch_panes`), and a dialog or a usage-limit notice seen there acts as the hooks' report would.
"""

import shlex
from contextlib import suppress
from datetime import datetime, timedelta, timezone
from typing import Any

from protocol.event import EventType
from protocol.messages import AgentRunState, Message
from protocol.task import LIVE_STATUSES
from swarmd.errors import SwarmError
from swarmd.ledger.questions import first_line, record_answer
from swarmd.supervisor.state import SUPERVISOR, WorkerState
from swarmd.workers.dialogs import Dialog, parse_dialog
from swarmd.workers.panestate import Look, PaneState, parse_reset

ASK_TO_REPORT = """You have stopped without reporting on task {task}. If it is done, report DONE; if you cannot finish it,
report FAILED with the reason:

    agentmail send --home {home} --from {agent} --to supervisor --type DONE --task {task} --field summary="..."
    agentmail send --home {home} --from {agent} --to supervisor --type FAILED --task {task} --field reason="..."
"""

CONTINUE = "The usage limit you hit has reset. Continue with task {task} where you left off."

STATE_KEYS = ("agent_state", "state_detail", "session_id", "usage")
PANE_LOOK = 1.0  # seconds between the supervisor's own looks at one interactive agent's pane
# Looks in a row that must show a usage-limit notice before the screen alone pauses a worker: its hooks, when it
# has them, tell sooner and give the reset time.
LIMIT_LOOKS = 2
# Looks that wait for a dialog a hook reported to be drawn (its question then gives the options) before the
# question is asked with the hook's text alone.
DIALOG_LOOKS = 3


class AgentStates:
    """A mixin over the loop's state: it holds no state of its own."""

    def on_agent_state(self, msg: Message) -> None:
        body = msg.body
        entry = self.ledger.registry().get(msg.sender)
        if entry is None:
            return  # not an agent of this swarm (its last reports may come after its attempt has ended)
        old: dict[str, Any] = dict(entry.metadata)
        state = AgentRunState(body.state)
        new = {**old, "agent_state": state.value, "state_detail": body.detail,
               "state_resets_at": body.resets_at.isoformat() if body.resets_at else None}
        if body.session_id:
            new["session_id"] = body.session_id
        usage = {k: v for k, v in body.usage.items() if isinstance(v, (int, float))}
        if usage:
            new["usage"] = usage
        if state == AgentRunState.RATE_LIMITED:
            if self.pause(msg.sender, body.resets_at or parse_reset(body.detail, self.clock())):
                new.update(self.pause_fields(msg.sender))
        elif state in (AgentRunState.WORKING, AgentRunState.EXITED) and self.unpause(msg.sender):
            new.update(self.pause_fields(msg.sender))
        if state == AgentRunState.NEEDS_INPUT:
            new["state_detail"] = self.ask_about_dialog(msg.sender, body.detail)
        elif state in (AgentRunState.WORKING, AgentRunState.IDLE) and (worker := self.workers.get(msg.sender)):
            self.dialog_closed(worker)
        if new != old:
            summary = f"{msg.sender} is {state.value}" + (f": {body.detail.splitlines()[0][:200]}"
                                                           if body.detail.strip() else "")
            self.ledger.update_agent(msg.sender, SUPERVISOR, summary=summary, metadata=new)
        if state == AgentRunState.IDLE and old.get("agent_state") == AgentRunState.WORKING:
            self.idle_after_work(msg.sender)
        delta = usage_delta(old.get("usage") or {}, usage)
        if delta:
            cost = delta.get("cost_usd", 0.0)
            self.ledger.append(EventType.COST_UPDATE, SUPERVISOR, body.task or entry.task,
                               summary=f"{msg.sender}: +{int(delta.get('input_tokens', 0))} in, "
                                       f"+{int(delta.get('output_tokens', 0))} out tokens"
                                       + (f", +${cost:.4f}" if cost else ""),
                               worker=msg.sender, delta=delta, total=usage)

    def pause(self, name: str, resets_at: datetime | None, *, on_screen: bool = False) -> datetime | None:
        """Pause worker `name`, whose agent hit a usage limit that resets at `resets_at` (aware UTC; None: unknown,
        then `rate_limit_wait` seconds from now; `on_screen`: the limit was read from its pane): its attempt neither
        times out nor goes stale while paused, and at the reset (a monotonic deadline) `resume_due` queues a
        "continue" prompt. A pause whose reset time was unknown takes the one a later report gives. Returns when it
        resumes, or None if it is not a worker of this supervisor or is paused already."""
        worker = self.workers.get(name)
        if worker is None or (worker.paused_since is not None and not (worker.reset_unknown and resets_at)):
            return None
        now, clock = self.clock(), self.monotonic()
        wait = max(0.0, (resets_at - now).total_seconds()) if resets_at else self.config.rate_limit_wait
        worker.paused_since = clock if worker.paused_since is None else worker.paused_since
        worker.resume_at, worker.reset_unknown = clock + wait, resets_at is None
        until = now + timedelta(seconds=wait)
        why = "a usage limit seen on its screen" if on_screen else "its agent hit a usage limit"
        unknown = f" (no reset time {'shown' if on_screen else 'given'}: {wait:g} s)"
        self.ledger.append(EventType.CUSTOM, SUPERVISOR, worker.task,
                           summary=f"{name} paused until {until:%Y-%m-%d %H:%M:%S} UTC: {why}"
                                   + ("" if resets_at else unknown))
        return until

    def unpause(self, name: str) -> bool:
        """End worker `name`'s pause, its paused time left out of its timeout and stale checks; False if it was
        not paused."""
        worker = self.workers.get(name)
        if worker is None or worker.paused_since is None:
            return False
        now = self.monotonic()
        worker.paused_for += now - worker.paused_since
        worker.paused_since = worker.resume_at = None
        worker.reset_unknown = False
        worker.beat_seen_at = now  # heartbeats are judged afresh from here
        return True

    def resume_due(self, worker: WorkerState, now: float) -> None:
        """At its reset time, a paused worker is unpaused and a "continue" prompt (kind `resume`) is queued, which
        the queue delivers once its pane is idle."""
        if worker.resume_at is None or now < worker.resume_at or not self.unpause(worker.name):
            return
        if worker.host:  # its host types it in (`swarmd.hosts.prompts`)
            self.prompt_remote(worker, CONTINUE.format(task=worker.task))
        else:
            self.prompt_queue(worker.name).push(CONTINUE.format(task=worker.task), kind="resume", sender=SUPERVISOR)
        entry = self.ledger.registry().get(worker.name)
        if entry is not None:
            self.ledger.update_agent(worker.name, SUPERVISOR, summary=f"{worker.name}: usage limit reset",
                                     metadata={**entry.metadata, **self.pause_fields(worker.name)})
        self.ledger.append(EventType.CUSTOM, SUPERVISOR, worker.task,
                           summary=f"{worker.name}: its usage limit has reset; queued a prompt to continue")

    def pause_fields(self, name: str) -> dict[str, Any]:
        """Worker `name`'s pause as registry metadata, what a restarted supervisor needs to take it up again
        (`resume_paused`): `paused_until` and `paused_at` (ISO UTC; None when not paused) and `paused_for` (seconds
        of its earlier, ended pauses)."""
        worker = self.workers[name]
        if worker.paused_since is None or worker.resume_at is None:
            return {"paused_until": None, "paused_at": None, "paused_for": round(worker.paused_for, 3)}
        wall, now = self.clock(), self.monotonic()
        return {"paused_until": (wall + timedelta(seconds=worker.resume_at - now)).isoformat(),
                "paused_at": (wall - timedelta(seconds=now - worker.paused_since)).isoformat(),
                "paused_for": round(worker.paused_for, 3)}

    def resume_paused(self, worker: WorkerState, metadata: dict[str, Any]) -> None:
        """Take up the pause a supervisor before this one recorded for `worker` (its registry `metadata`, see
        `pause_fields`): it stays paused until the recorded reset (at once due when that has passed), and the
        paused time, before and since the restart, stays out of its timeout."""
        with suppress(TypeError, ValueError):
            worker.paused_for = float(metadata.get("paused_for") or 0.0)
        until, since = _when(metadata.get("paused_until")), _when(metadata.get("paused_at"))
        if until is None:
            return
        wall, now = self.clock(), self.monotonic()
        worker.paused_since = now - max(0.0, (wall - (since or wall)).total_seconds())
        worker.resume_at = now + max(0.0, (until - wall).total_seconds())
        self.ledger.append(EventType.CUSTOM, SUPERVISOR, worker.task,
                           summary=f"{worker.name} is still paused until {until:%Y-%m-%d %H:%M:%S} UTC "
                                   "(a usage limit, taken up after the supervisor's restart)")

    def ask_about_dialog(self, name: str, detail: str, dialog: Dialog | None = None) -> str:
        """Worker `name` waits on a dialog: the text to show for it (the dialog's own text and options when its
        pane shows one, `dialog` if already read, else `detail`, what its hook said). Once in a wait, a `question`
        in the feed says so (`swarm answer W CHOICE` answers it): when the dialog is drawn (a hook may tell before
        it is), or after DIALOG_LOOKS pane looks without it, with the hook's text. A headless agent has no dialog
        to answer: its detail is shown as it is."""
        worker = self.workers.get(name)
        if worker is None or not self.interactive(name):
            return detail
        dialog = dialog or self._dialog_on_screen(worker)
        text = dialog.describe() if dialog is not None else detail.strip() or "a dialog (see `swarm attach`)"
        if worker.asked_about is None and dialog is None and worker.dialog_looks <= DIALOG_LOOKS:
            worker.dialog_looks = max(1, worker.dialog_looks)  # not drawn yet: the pane looks ask once it is
        elif worker.asked_about is None:
            worker.dialog_looks = 0
            worker.asked_about = self.ledger.append(
                EventType.QUESTION, name, worker.task, summary=f"{name} waits on a dialog: {first_line(text)}",
                kind="dialog", question=text, options=list(dialog.options) if dialog is not None else []).seq
        return text

    def dialog_closed(self, worker: WorkerState) -> None:
        """The agent goes on after a dialog: its question is closed, by an answer in the feed that says so unless
        `swarm answer` gave one already (a person may have answered in the pane itself)."""
        worker.dialog_looks = 0
        if worker.asked_about is None:
            return
        since, worker.asked_about = worker.asked_about, None
        if not any(e.detail.get("answered") == worker.name for e in self.ledger.events(since_seq=since)):
            record_answer(self.ledger, SUPERVISOR, worker.name, worker.task, "its dialog was answered in its pane", "")

    def _dialog_on_screen(self, worker: WorkerState) -> Dialog | None:
        try:
            return parse_dialog(self.tmux.screen(worker.session))
        except SwarmError:
            return None

    def watch_panes(self) -> None:
        """The pane fallback, about once a second per interactive agent: a dialog on its screen makes it
        `needs_input` (with the dialog's text and a `question`) if its hooks have not said so; a usage-limit
        notice seen on `LIMIT_LOOKS` looks in a row pauses it as the hooks' `rate_limited` would (until the
        notice's reset time, else `rate_limit_wait`)."""
        now = self.monotonic()
        for worker in list(self.workers.values()):
            if worker.reported or now - worker.looked_at < PANE_LOOK:
                continue
            worker.looked_at = now  # a headless worker too: whether it is interactive is asked once a second
            if not self.interactive(worker.name):
                continue
            watcher = self.watcher(worker.name)
            before = watcher.state
            try:
                look = watcher.look()
            except SwarmError:
                continue  # tmux failed this once; the health checks judge a pane that is gone
            worker.limit_looks = worker.limit_looks + 1 if look.state == PaneState.RATE_LIMITED else 0
            if look.state == PaneState.NEEDS_INPUT and look.reading is not None and look.reading.dialog is not None:
                self._show_state(worker, AgentRunState.NEEDS_INPUT,
                                 self.ask_about_dialog(worker.name, "", look.reading.dialog))
            elif look.state == PaneState.RATE_LIMITED and worker.limit_looks >= LIMIT_LOOKS:
                self._limit_seen(worker, look)
            elif look.state == PaneState.WORKING and before == PaneState.NEEDS_INPUT:
                self.dialog_closed(worker)  # only a dialog it saw go: a hook's may not be drawn yet
            elif worker.dialog_looks:
                worker.dialog_looks += 1  # past DIALOG_LOOKS, the hook's text is asked about as it is
                entry = self.ledger.registry().get(worker.name)
                self.ask_about_dialog(worker.name, str(entry.metadata.get("state_detail") or "") if entry else "")

    def _limit_seen(self, worker: WorkerState, look: Look) -> None:
        """A usage-limit notice on the screen pauses the worker, unless it is paused already or the "continue"
        after its last pause is still on its way to the agent (the notice stays on screen until then)."""
        continuing = any(item.kind == "resume" for item in self.prompt_queue(worker.name).items())
        if worker.paused_since is not None or continuing:
            return
        if self.pause(worker.name, look.resets_at, on_screen=True) is None:
            return
        notice = look.reading.limit if look.reading is not None and look.reading.limit else "a usage limit"
        self._show_state(worker, AgentRunState.RATE_LIMITED, f"seen on its screen: {notice}",
                         **self.pause_fields(worker.name))

    def _show_state(self, worker: WorkerState, state: AgentRunState, detail: str, **fields: Any) -> None:
        """Put a state read from the pane into the registry, as the hooks' would be (unless it says so already)."""
        entry = self.ledger.registry().get(worker.name)
        if entry is None:
            return
        new = {**entry.metadata, "agent_state": state.value, "state_detail": detail, **fields}
        if new != entry.metadata:
            self.ledger.update_agent(worker.name, SUPERVISOR, metadata=new,
                                     summary=f"{worker.name} is {state.value}: {first_line(detail)}")

    def idle_after_work(self, name: str) -> None:
        """An interactive agent that went idle after working without DONE or FAILED is asked once to report
        (the question is queued into its pane); idle again without a report, its attempt fails as stuck, with
        the pane's last screen as the reason."""
        worker = self.workers.get(name)
        if worker is None or worker.reported or not self.interactive(name):
            return
        task = self.ledger.board().get(worker.task)
        if task is None or task.assignee != name or task.status not in LIVE_STATUSES:
            return
        if not worker.asked_to_report:
            worker.asked_to_report = True
            text = ASK_TO_REPORT.format(task=task.id, agent=name, home=shlex.quote(str(self.home.root)))
            self.prompt_queue(name).push(text, kind="reminder", sender=SUPERVISOR)
            self.ledger.append(EventType.CUSTOM, SUPERVISOR, task.id,
                               summary=f"{name} went idle without reporting; asked it once to report")
            return
        try:
            screen = self.tmux.screen(worker.session).rstrip()
        except SwarmError as exc:
            screen = f"(the pane could not be read: {exc})"
        self._fail(task, worker, f"stuck: {name} stayed idle without reporting DONE or FAILED, even when asked."
                                 f"\nIts last screen:\n{screen}")


def _when(value: Any) -> datetime | None:
    """An ISO time from the registry as an aware datetime; None when absent or unreadable."""
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return when if when is None or when.tzinfo else when.replace(tzinfo=timezone.utc)


def usage_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What `after` (an agent's running totals) adds to `before`; {} when nothing grew. A total that went down
    (a new session) counts from zero."""
    delta = {}
    for key, value in after.items():
        previous = before.get(key, 0)
        grown = value - previous if value >= previous else value
        if grown:
            delta[key] = grown
    return delta

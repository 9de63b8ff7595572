"""The supervisor's reaction to AGENT_STATE mail (a worker's agent hooks report what it does): the state goes
into the registry entry's metadata (so `swarm status`, the registry and the feed show it), and a change in the
agent's own usage records becomes a `cost_update` event carrying the difference. An agent that hit a usage limit
is paused (not failed) until the limit resets, then told to continue."""

import shlex
from datetime import datetime, timedelta
from typing import Any

from protocol.event import EventType
from protocol.ids import utcnow
from protocol.messages import AgentRunState, Message
from protocol.task import LIVE_STATUSES
from swarmd.errors import SwarmError
from swarmd.supervisor.state import SUPERVISOR, WorkerState
from swarmd.workers.panestate import parse_reset

ASK_TO_REPORT = """You have stopped without reporting on task {task}. If it is done, report DONE; if you cannot finish it,
report FAILED with the reason:

    agentmail send --home {home} --from {agent} --to supervisor --type DONE --task {task} --field summary="..."
    agentmail send --home {home} --from {agent} --to supervisor --type FAILED --task {task} --field reason="..."
"""

CONTINUE = "The usage limit you hit has reset. Continue with task {task} where you left off."

STATE_KEYS = ("agent_state", "state_detail", "session_id", "usage")


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
            until = self.pause(msg.sender, body.resets_at or parse_reset(body.detail, utcnow()))
            new["paused_until"] = until.isoformat() if until else old.get("paused_until")
        elif state in (AgentRunState.WORKING, AgentRunState.EXITED) and self.unpause(msg.sender):
            new["paused_until"] = None
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

    def pause(self, name: str, resets_at: datetime | None) -> datetime | None:
        """Pause worker `name`, whose agent hit a usage limit that resets at `resets_at` (aware UTC; None: unknown,
        then `rate_limit_wait` seconds from now): its attempt neither times out nor goes stale while paused, and at
        the reset (a monotonic deadline) `resume_due` queues a "continue" prompt. Returns when it resumes, or
        None if it is not a worker of this supervisor or is paused already."""
        worker = self.workers.get(name)
        if worker is None or worker.paused_since is not None:
            return None
        now = utcnow()
        wait = max(0.0, (resets_at - now).total_seconds()) if resets_at else self.config.rate_limit_wait
        worker.paused_since = self.monotonic()
        worker.resume_at = worker.paused_since + wait
        until = now + timedelta(seconds=wait)
        self.ledger.append(EventType.CUSTOM, SUPERVISOR, worker.task,
                           summary=f"{name} paused until {until:%Y-%m-%d %H:%M:%S} UTC: its agent hit a usage limit"
                                   + ("" if resets_at else f" (no reset time given: {wait:g} s)"))
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
        worker.beat_seen_at = now  # heartbeats are judged afresh from here
        return True

    def resume_due(self, worker: WorkerState, now: float) -> None:
        """At its reset time, a paused worker is unpaused and a "continue" prompt (kind `resume`) is queued, which
        the queue delivers once its pane is idle."""
        if worker.resume_at is None or now < worker.resume_at or not self.unpause(worker.name):
            return
        self.prompt_queue(worker.name).push(CONTINUE.format(task=worker.task), kind="resume", sender=SUPERVISOR)
        entry = self.ledger.registry().get(worker.name)
        if entry is not None:
            self.ledger.update_agent(worker.name, SUPERVISOR, summary=f"{worker.name}: usage limit reset",
                                     metadata={**entry.metadata, "paused_until": None})
        self.ledger.append(EventType.CUSTOM, SUPERVISOR, worker.task,
                           summary=f"{worker.name}: its usage limit has reset; queued a prompt to continue")

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

"""The supervisor's reaction to AGENT_STATE mail (a worker's agent hooks report what it does): the state goes
into the registry entry's metadata (so `swarm status`, the registry and the feed show it), and a change in the
agent's own usage records becomes a `cost_update` event carrying the difference."""

from typing import Any

import shlex

from protocol.event import EventType
from protocol.messages import AgentRunState, Message
from protocol.task import LIVE_STATUSES
from swarmd.errors import SwarmError
from swarmd.supervisor.state import SUPERVISOR

ASK_TO_REPORT = """You have stopped without reporting on task {task}. If it is done, report DONE; if you cannot finish it,
report FAILED with the reason:

    agentmail send --home {home} --from {agent} --to supervisor --type DONE --task {task} --field summary="..."
    agentmail send --home {home} --from {agent} --to supervisor --type FAILED --task {task} --field reason="..."
"""

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

"""The supervisor's reaction to AGENT_STATE mail (a worker's agent hooks report what it does): the state goes
into the registry entry's metadata (so `swarm status`, the registry and the feed show it), and a change in the
agent's own usage records becomes a `cost_update` event carrying the difference."""

from typing import Any

from protocol.event import EventType
from protocol.messages import AgentRunState, Message
from swarmd.supervisor.state import SUPERVISOR

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
        delta = usage_delta(old.get("usage") or {}, usage)
        if delta:
            cost = delta.get("cost_usd", 0.0)
            self.ledger.append(EventType.COST_UPDATE, SUPERVISOR, body.task or entry.task,
                               summary=f"{msg.sender}: +{int(delta.get('input_tokens', 0))} in, "
                                       f"+{int(delta.get('output_tokens', 0))} out tokens"
                                       + (f", +${cost:.4f}" if cost else ""),
                               worker=msg.sender, delta=delta, total=usage)


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

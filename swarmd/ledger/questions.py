"""Questions and answers in the feed: a worker's HELP_REQUEST is a `question` event, an answer (by the
operator's `swarm reply` or a helper) is a `custom` event that names the worker it answers. A question with
no answer after it is one the worker is still waiting on."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from protocol.event import Event, EventType
from swarmd.ledger.log import Ledger


@dataclass(frozen=True)
class Question:
    """A question a worker asked and nobody has answered yet."""

    worker: str
    task: str | None
    text: str  # the question (or, when it asked none, the problem it described)
    asked: datetime


def first_line(text: str, limit: int = 200) -> str:
    """The first non-blank line of `text`, at most `limit` characters."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:limit]


def record_answer(ledger: Ledger, by: str, worker: str, task: str | None, text: str, msg: str) -> Event:
    """Put an answer to `worker` in the feed: `<by> answered <worker>: <first line>`; `msg` is its mail's id."""
    return ledger.append(EventType.CUSTOM, by, task, summary=f"{by} answered {worker}: {first_line(text)}",
                         answered=worker, answer=text, msg=msg)


def unanswered(events: Iterable[Event]) -> dict[str, Question]:
    """Each worker's latest question that no answer to it followed, by worker name, from events in log order."""
    waiting: dict[str, Question] = {}
    for event in events:
        if event.type == EventType.QUESTION:
            detail = event.detail
            text = str(detail.get("question") or detail.get("problem") or event.summary)
            waiting[event.agent] = Question(event.agent, event.task, text, event.ts)
        elif event.type == EventType.CUSTOM and (answered := event.detail.get("answered")):
            waiting.pop(str(answered), None)
    return waiting

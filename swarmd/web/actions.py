"""What an operator does from the page: each action is one call of the same `Operator` method the CLI's
command makes, acting as the signed-in person (the feed's agent on what it writes)."""

from collections.abc import Callable
from typing import Any

from swarmd.errors import SwarmError
from swarmd.operate import Operator

MAX_TEXT = 64 * 1024  # characters of a steer or an answer typed into the page


def _text(body: dict[str, Any], key: str = "text") -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise SwarmError(f"`{key}` must be some text")
    if len(value) > MAX_TEXT:
        raise SwarmError(f"`{key}` is longer than {MAX_TEXT} characters")
    return value


def _worker(body: dict[str, Any]) -> str:
    value = body.get("worker")
    if not isinstance(value, str):
        raise SwarmError("`worker` must name a worker")
    return value


def _tasks(body: dict[str, Any]) -> list[str]:
    value = body.get("tasks")
    if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
        raise SwarmError("`tasks` must be a list of task ids")
    return value


ACTIONS: dict[str, Callable[[Operator, dict[str, Any]], dict[str, Any]]] = {
    "steer": lambda op, b: {"id": op.steer(_worker(b), _text(b), nudge=b.get("nudge") is True)},
    "reply": lambda op, b: {"id": op.reply(_worker(b), _text(b))},
    "kill": lambda op, b: {"task": op.kill(_worker(b), hold=b.get("hold") is True)},
    "retry": lambda op, b: {"retried": op.retry(_tasks(b))},
    "pause": lambda op, b: {"changed": op.pause()},
    "resume": lambda op, b: {"changed": op.resume()},
}


def act(operator: Operator, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """Run action `name` with the page's JSON `body`; SwarmError (a one-line reason) for an unknown action,
    a bad body, or a refusal of the library (a worker that has ended, a task that cannot be retried)."""
    action = ACTIONS.get(name)
    if action is None:
        raise SwarmError(f"no action {name!r}: one of {', '.join(ACTIONS)}")
    return action(operator, body)

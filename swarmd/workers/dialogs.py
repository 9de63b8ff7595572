"""Answering a dialog in an agent's pane by its option's label (`swarm answer W CHOICE`).

The selection is moved with the arrow keys, checked on the screen, and only then confirmed with Enter: a
label is never guessed from a number typed blind. A dialog that would confirm something destructive (see
`panestate.parse_dialog`) is answered only when the caller says so.
"""

import time
from collections.abc import Callable
from typing import Any

from swarmd.errors import SwarmError
from swarmd.workers.panestate import Dialog, parse_dialog
from swarmd.workers.tmux import TmuxServer

_POLL = 0.02  # seconds between looks at the pane
_RESEND = 1.0  # seconds a key may take to show before it is taken as lost and sent again


def answer_dialog(tmux: TmuxServer, session: str, choice: str, *, destructive: bool = False,
                  timeout: float = 10.0) -> str:
    """Pick the option `choice` (its label, the start of one, or its number) in the dialog on `session`'s
    screen; return the label picked. Raises SwarmError when no dialog shows, `choice` names no single option,
    the dialog is destructive and `destructive` is false, or the selection did not move within `timeout` s."""
    tmux.leave_copy_mode(session)
    dialog = parse_dialog(tmux.screen(session))
    if dialog is None:
        raise SwarmError(f"{session} shows no dialog to answer: see `swarm attach`")
    try:
        index = dialog.choose(choice)
    except ValueError as exc:
        raise SwarmError(str(exc)) from None
    if dialog.destructive and not destructive:
        raise SwarmError(f"the dialog in {session} would confirm something destructive ({_first(dialog)}): "
                         "answer it yourself in `swarm attach`, or pass --destructive")
    _select(tmux, session, dialog, index, timeout)
    _confirm(tmux, session, dialog, timeout)
    return dialog.options[index]


def _select(tmux: TmuxServer, session: str, dialog: Dialog, index: int, timeout: float) -> None:
    """Move the selection to `index` with the arrow keys. Keys sent while the dialog is still being set up are
    lost (claude-code 2.1.332 drops the first key after a dialog shows), so the position is read back and the
    missing steps sent again until it is right."""
    deadline = time.monotonic() + timeout
    seen = dialog
    while seen.selected != index:
        current = parse_dialog(tmux.screen(session))  # a key taken for lost may have arrived late
        seen = current if current is not None and current.options == dialog.options else seen
        if seen.selected == index:
            break
        steps = index - seen.selected
        tmux.press(session, *(["Down"] * steps if steps > 0 else ["Up"] * -steps))
        moved = _look_until(tmux, session, min(deadline, time.monotonic() + _RESEND),
                            lambda d: d is not None and d.options == dialog.options and d.selected != seen.selected)
        if moved is None:
            if time.monotonic() > deadline:
                raise SwarmError(f"the selection in {session}'s dialog did not move to {dialog.options[index]!r}: "
                                 "see `swarm attach`")
            continue
        seen = moved


def _confirm(tmux: TmuxServer, session: str, dialog: Dialog, timeout: float) -> None:
    """Press Enter, and once more if the dialog still shows unchanged."""
    for wait in (min(_RESEND, timeout), timeout):
        tmux.press(session, "Enter")
        gone = _look_until(tmux, session, time.monotonic() + wait, lambda d: d is None or d.options != dialog.options)
        if gone is not None:
            return
    raise SwarmError(f"the dialog in {session} did not take the answer: see `swarm attach`")


def _look_until(tmux: TmuxServer, session: str, deadline: float, ok: Callable[[Dialog | None], bool]) -> Any:
    """The first dialog reading (a Dialog, or True for none) that passes `ok` before `deadline`; else None."""
    while True:
        seen = parse_dialog(tmux.screen(session))
        if ok(seen):
            return seen if seen is not None else True
        if time.monotonic() > deadline:
            return None
        time.sleep(_POLL)


def _first(dialog: Dialog) -> str:
    lines = [line for line in dialog.text.splitlines() if line.strip()]
    return lines[-2] if len(lines) >= 2 else (lines[0] if lines else "no text")

"""Answering a dialog in an agent's pane by its option's label (`swarm answer W CHOICE`).

The selection is moved with the arrow keys, checked on the screen, and only then confirmed with Enter: a
label is never guessed from a number typed blind. A dialog that would confirm something destructive (see
`panestate.parse_dialog`) is answered only when the caller says so.
"""

import time

from swarmd.errors import SwarmError
from swarmd.workers.panestate import Dialog, parse_dialog
from swarmd.workers.tmux import TmuxServer

_POLL = 0.02  # seconds between looks at the pane


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
    steps = index - dialog.selected
    tmux.press(session, *(["Down"] * steps if steps > 0 else ["Up"] * -steps))
    _wait_selected(tmux, session, dialog, index, timeout)
    tmux.press(session, "Enter")
    return dialog.options[index]


def _wait_selected(tmux: TmuxServer, session: str, dialog: Dialog, index: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        seen = parse_dialog(tmux.screen(session))
        if seen is not None and seen.options == dialog.options and seen.selected == index:
            return
        if time.monotonic() > deadline:
            raise SwarmError(f"the selection in {session}'s dialog did not move to {dialog.options[index]!r}: "
                             "see `swarm attach`")
        time.sleep(_POLL)


def _first(dialog: Dialog) -> str:
    lines = [line for line in dialog.text.splitlines() if line.strip()]
    return lines[-2] if len(lines) >= 2 else (lines[0] if lines else "no text")

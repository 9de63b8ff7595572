"""Dialogs in an agent's pane: reading one (its text, its options, the selected one) and answering it by its
option's label (`swarm answer W CHOICE`).

A dialog is a selection mark (`❯`, `›`) on an indented option line: claude-code 2.1.332 numbers the options
of a permission dialog ("❯ 1. Yes") but not those of its trust or API-key dialogs. To answer, the selection is
moved with the arrow keys, checked on the screen, and only then confirmed with Enter: a label is never guessed
from a number typed blind. A dialog that would confirm something destructive is answered only when the caller
says so.
"""

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from swarmd.errors import SwarmError
from swarmd.workers.tmux import TmuxServer

_POLL = 0.02  # seconds between looks at the pane
_RESEND = 1.0  # seconds a key may take to show before it is taken as lost and sent again
_SELECTED = re.compile(r"^(\s*)([❯›])\s*(?:(\d+)\.\s+)?(\S.*?)\s*$")
_NUMBERED = re.compile(r"^\s*(?:[❯›]\s*)?(\d+)\.\s+(\S.*?)\s*$")
_DIALOG_RULE = re.compile(r"^\s*[─━]{8,}")
_DESTRUCTIVE = re.compile(r"\brm\s+-|\bdelete\b|\bremove\b|\bdrop\b|\boverwrite\b|--force\b|\breset --hard\b|"
                          r"\bdestroy\b|\bwipe\b|\btruncate\b|\bgit push\b|\bmkfs\b|\bdd\b", re.IGNORECASE)


@dataclass(frozen=True)
class Dialog:
    """A dialog on the agent's screen: its text, its options' labels in screen order, the selected one (index)
    and whether it would confirm something destructive (then it is never answered automatically)."""

    text: str
    options: tuple[str, ...]
    selected: int
    destructive: bool

    def choose(self, label: str) -> int:
        """The index of the option `label` names: its exact label, its number, or the one label it starts;
        ValueError when none or several match."""
        wanted = label.strip().casefold()
        labels = [option.casefold() for option in self.options]
        if wanted in labels:
            return labels.index(wanted)
        if wanted.isdigit() and 1 <= int(wanted) <= len(labels):
            return int(wanted) - 1
        matches = [i for i, option in enumerate(labels) if option.startswith(wanted)]
        if len(matches) != 1:
            raise ValueError(f"{label!r} names {'no' if not matches else 'more than one'} option of: "
                             + "; ".join(self.options))
        return matches[0]

    def describe(self) -> str:
        """The dialog for a person: its text, then its options by number (what `swarm answer W CHOICE` takes)."""
        options = " · ".join(f"{i}. {option}" for i, option in enumerate(self.options, 1))
        caution = "\n(destructive: answer it yourself, or with --destructive)" if self.destructive else ""
        return f"{self.text}\nOptions: {options}{caution}".strip()


def parse_dialog(screen: str) -> Dialog | None:
    """The dialog on `screen`: a selection mark (`❯`, `›`) on an indented or numbered option; None if none."""
    lines = screen.splitlines()
    at = next((i for i in range(len(lines) - 1, -1, -1) if _is_option_mark(lines[i])), None)
    if at is None:
        at = _bottom_selection(lines)
    if at is None:
        return None
    first, last = _option_block(lines, at)
    options = tuple(_label(line) for line in lines[first:last + 1])
    top = next((i for i in range(first - 1, -1, -1) if _DIALOG_RULE.match(lines[i])), None)
    top = _gap_above(lines, first) if top is None else top
    body = [line.strip() for line in lines[top + 1:first] if line.strip() and not set(line.strip()) <= {"╌"}]
    text = "\n".join(body)
    return Dialog(text=text, options=options, selected=at - first,
                  destructive=bool(_DESTRUCTIVE.search(text)))


def _is_option_mark(line: str) -> bool:
    match = _SELECTED.match(line)
    return bool(match) and bool(match.group(1))  # indented: a composer or a sent prompt starts in column 0


def _bottom_selection(lines: list[str]) -> int | None:
    """Codex's dialogs (0.171.0): the selected option is numbered with its mark in column 0 ("› 1. Yes,
    proceed (y)"), where its composer and sent prompts also start, so it counts only as the last marked line
    (no composer below it) with a key hint naming `esc` just under its options ("Press enter to confirm or esc
    to cancel", "enter confirm · esc skip")."""
    at = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith(("❯", "›"))), None)
    if at is None or not _NUMBERED.match(lines[at]):
        return None
    last = _option_block(lines, at)[1]
    hint = [line for line in lines[last + 1:last + 4] if line.strip()]
    return at if hint and "esc" in hint[0].casefold() else None


def _gap_above(lines: list[str], first: int) -> int:
    """Where a dialog without a rule above it starts: after the nearest line above its options that starts in
    column 0 (the conversation) or three blank lines in a row."""
    blank = 0
    for i in range(first - 1, -1, -1):
        if not lines[i].strip():
            blank += 1
            if blank >= 3:
                return i
            continue
        blank = 0
        if not lines[i][:1].isspace():
            return i
    return -1


def _label(line: str) -> str:
    match = _NUMBERED.match(line) or _SELECTED.match(line)
    if match is None:
        return line.strip()
    return match.group(match.lastindex or 0)


def _option_block(lines: list[str], at: int) -> tuple[int, int]:
    """The first and last line of the options around the selected line `at`: numbered lines, or lines whose
    label starts in the same column."""
    numbered = _NUMBERED.match(lines[at]) is not None
    column = _label_column(lines[at])

    def option(line: str) -> bool:
        if numbered:
            return _NUMBERED.match(line) is not None
        return bool(line.strip()) and _label_column(line) == column and line[:column].strip() in ("", "❯", "›")

    first = at
    while first > 0 and option(lines[first - 1]):
        first -= 1
    last = at
    while last + 1 < len(lines) and option(lines[last + 1]):
        last += 1
    return first, last


def _label_column(line: str) -> int:
    match = _SELECTED.match(line)
    return match.start(4) if match else len(line) - len(line.lstrip())


def answer_dialog(tmux: TmuxServer, session: str, choice: str, *, destructive: bool = False,
                  timeout: float = 30.0) -> str:
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
    """Move the selection to `index` and let it settle: it must stay there for _RESEND s, for a key taken for
    lost may arrive late (claude-code 2.1.332 can hold the first keys after a dialog shows for over a second)
    and move it on; then it is moved back. Raises SwarmError when it will not hold by `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        _move(tmux, session, dialog, index, deadline)
        moved = _look_until(tmux, session, time.monotonic() + _RESEND,
                            lambda d: d is not None and d.options == dialog.options and d.selected != index)
        if moved is None:
            return
        if time.monotonic() > deadline:
            raise SwarmError(f"the selection in {session}'s dialog did not hold at {dialog.options[index]!r}: "
                             "see `swarm attach`")
        dialog = moved


def _move(tmux: TmuxServer, session: str, dialog: Dialog, index: int, deadline: float) -> None:
    """Move the selection to `index` with the arrow keys. Keys sent while the dialog is still being set up may
    be lost, so the position is read back and the missing steps sent again until it is right."""
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

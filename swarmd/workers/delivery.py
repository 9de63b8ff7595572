"""Verified prompt delivery into an interactive agent's pane (Claude Code, Codex, or any TUI with a composer).

One delivery, under the worker's own file lock:
1. leave copy mode (a person scrolling the pane must not swallow the keys);
2. wait for the agent's composer (its input box) to show on the screen;
3. text that is multi-line, long, or holds `/`, `@`, a file name or a leading mode character goes in through a
   named tmux buffer loaded from stdin and pasted as a bracketed paste (`paste-buffer -p`); short plain text
   is typed literally;
4. wait until the composer shows the text (or the agent's "[Pasted text #1 ...]" placeholder for it) on two
   looks in a row, then press Enter on its own;
5. look again: if the composer still holds the text, press Enter once more; if it still holds it after that,
   the delivery failed.

Every wait is on a condition with a deadline, never a fixed pause. The recipe is the one the tmux agent
managers converged on (claude-squad, ntm, Gas Town's `nudge`): an Enter that arrives while the agent still
takes in a paste may be read as part of it (a newline) or lost, leaving the prompt unsent. With claude-code
2.1.332 a paste and an Enter sent back to back are still one turn, but the newlines of a paste that is not
bracketed are Enters (its first line goes alone), and keys sent as a dialog first shows are dropped.
"""

import itertools
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock, Timeout

from swarmd.errors import SwarmError
from swarmd.workers.tmux import TmuxError, TmuxServer, check_session_name

# The first character of an agent's composer line: Claude Code's `❯` (followed by a no-break space) and
# Codex's `›`. A composer runs from that line down to the box's bottom rule (or the screen's end).
COMPOSER_MARKS = ("❯", "›")
_RULE = re.compile(r"^[─━]{8,}")
# Text typed (not pasted) must be short, one line, and free of what agents read specially.
_TYPE_LIMIT = 200
_SPECIAL = re.compile(r"[/@\\]|\w\.\w|^[!#?*&]")
# Control characters other than tab and newline; ESC above all could end a bracketed paste early.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_POLL = 0.02  # seconds between looks at the pane
_counter = itertools.count()


class DeliveryError(SwarmError):
    """A prompt could not be delivered (no composer, the text never showed, or it was not submitted)."""


def deliver_prompt(tmux: TmuxServer, session: str, text: str, *, lock_dir: Path, timeout: float = 10.0) -> None:
    """Submit `text` as one prompt to the agent in `session`'s pane and check that it was submitted.

    `lock_dir` holds one lock file per session, so two deliveries to one worker never interleave. `timeout`
    (seconds) bounds each wait (the lock, the composer, the text showing, the submission). Raises
    DeliveryError (also for a tmux failure or an empty text); the caller decides whether to retry.
    """
    text = normalize(text)
    if not text.strip():
        raise DeliveryError(f"nothing to deliver to {session}: the prompt is empty")
    try:
        check_session_name(session)
        lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with FileLock(str(lock_dir / f"{session}.lock"), timeout=timeout, mode=0o600):
            _deliver(tmux, session, text, timeout)
    except Timeout:
        raise DeliveryError(f"another delivery to {session} held its lock for {timeout:.0f}s") from None
    except TmuxError as exc:
        raise DeliveryError(f"could not deliver to {session}: {exc}") from None


def normalize(text: str) -> str:
    """The text as it is delivered: CRLF and CR read as newlines, other control characters dropped."""
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def needs_paste(text: str) -> bool:
    """Whether `text` must go in as a bracketed paste rather than typed keys."""
    return "\n" in text or "\t" in text or len(text) > _TYPE_LIMIT or bool(_SPECIAL.search(text))


def composer(screen: str) -> str | None:
    """The text in the agent's composer on `screen` (its lines, the mark and indents removed; a placeholder the
    agent shows in an empty composer counts as text); None when the screen shows no composer."""
    lines = screen.splitlines()
    starts = [i for i, line in enumerate(lines) if line[:1] in COMPOSER_MARKS]
    if not starts:
        return None
    start = starts[-1]
    boxed = any(_RULE.match(line) for line in lines[start + 1:])  # Claude's box; Codex's ends at a blank line
    body = [lines[start][1:]]
    for line in lines[start + 1:]:
        if _RULE.match(line) if boxed else not line.strip():
            break
        body.append(line)
    return "\n".join(line.strip() for line in body).strip()


def _deliver(tmux: TmuxServer, session: str, text: str, timeout: float) -> None:
    tmux.leave_copy_mode(session)
    before = _wait(lambda: composer(tmux.screen(session)), timeout, lambda c: c is not None,
                   f"{session} shows no agent composer")
    if needs_paste(text):
        buffer = f"swarmd-{os.getpid()}-{next(_counter)}"
        tmux.load_buffer(buffer, text)
        try:
            tmux.paste_buffer(session, buffer)
        finally:
            tmux.delete_buffer(buffer)
    else:
        tmux.send_keys(session, text, enter=False)
    shown = _settled(lambda: composer(tmux.screen(session)), timeout, lambda c: bool(c) and c != before,
                     f"the prompt never showed in {session}'s composer")
    for wait in (timeout / 4, timeout):  # the second Enter only when the first was not taken
        tmux.send_keys(session, "", enter=True)
        if _submitted(tmux, session, shown, wait):
            return
    raise DeliveryError(f"the prompt still sits in {session}'s composer after Enter was pressed twice")


def _submitted(tmux: TmuxServer, session: str, shown: str, timeout: float) -> bool:
    """Whether the composer stopped showing the pasted text within `timeout` s."""
    try:
        _wait(lambda: composer(tmux.screen(session)), timeout, lambda c: c != shown, "")
    except DeliveryError:
        return False
    return True


def _wait(look: Callable[[], str | None], timeout: float, ok: Callable[[str | None], bool], failure: str) -> str | None:
    """Look until `ok(look())`; return that look. DeliveryError(`failure`) after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        seen = look()
        if ok(seen):
            return seen
        if time.monotonic() > deadline:
            raise DeliveryError(failure)
        time.sleep(_POLL)


def _settled(look: Callable[[], str | None], timeout: float, ok: Callable[[str | None], bool], failure: str) -> str:
    """Like `_wait`, but the look must pass and be the same on two looks in a row (a paste still rendering is
    not yet settled)."""
    previous: list[str | None] = [None]

    def steady(seen: str | None) -> bool:
        same, previous[0] = seen == previous[0], seen
        return ok(seen) and same

    return str(_wait(look, timeout, steady, failure))

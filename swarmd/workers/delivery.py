"""Verified prompt delivery into an interactive agent's pane (Claude Code, Codex, or any TUI with a composer).

One delivery, under the worker's own file lock:
1. leave copy mode (a person scrolling the pane must not swallow the keys);
2. wait for the agent's composer (its input box) to show on the screen; if it holds text a person typed and
   has not sent, stop with `ComposerHeld` (the prompt waits: that text is neither destroyed nor merged into the
   prompt; the agent's own placeholder, drawn faint, is not such text);
3. text that is multi-line, long, or holds `/`, `@`, a file name or a leading mode character goes in through a
   named tmux buffer loaded from stdin and pasted as a bracketed paste (`paste-buffer -p`); short plain text
   is typed literally;
4. wait until the composer shows the text (or the agent's "[Pasted text #1 ...]" placeholder for it) on two
   looks in a row, then press Enter on its own;
5. look again: if the composer still holds the text, press Enter once more; if it still holds it after that,
   the delivery failed.

A text whose first character switches the composer into a mode is delivered under a one-line header,
`[message]`, so that it is submitted as plain text with its meaning unchanged. With claude-code 2.1.332 a
pasted `/word` runs the command `/word` (`/clear` clears the session; an unknown one says "Unknown command"),
a pasted `!cmd` runs `cmd` in the shell, and leading blanks or invisible characters do not help (the input is
trimmed; invisible characters are removed and the Enter only shows a notice); a pasted `#`, `?` or `@` at the
start is submitted as text. Codex reads `/` and `!` the same way.

Every wait is on a condition with a deadline, never a fixed pause. The recipe is the one the tmux agent
managers converged on (claude-squad, ntm, Gas Town's `nudge`): an Enter that arrives while the agent still
takes in a paste may be read as part of it (a newline) or lost, leaving the prompt unsent. With claude-code
2.1.332 a paste and an Enter sent back to back are still one turn, but the newlines of a paste that is not
bracketed are Enters (its first line goes alone), and keys sent as a dialog first shows are dropped.
"""

import itertools
import os
import re
import threading
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
# First characters that make the composer read the text as a command (`/`) or a shell line (`!`), not a prompt.
COMMAND_MARKS = ("/", "!")
PLAIN_HEADER = "[message]"
# Control characters other than tab and newline; ESC above all could end a bracketed paste early.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SGR = re.compile(r"\x1b\[([0-9;:]*)m")
_OTHER_ESCAPE = re.compile(r"\x1b(?:\][^\x07\x1b]*(?:\x07|\x1b\\)|\[[0-9;?]*[A-Za-z]|.)")
_POLL = 0.02  # seconds between looks at the pane
_counter = itertools.count()


class DeliveryError(SwarmError):
    """A prompt could not be delivered (no composer, the text never showed, or it was not submitted)."""


class ComposerHeld(DeliveryError):
    """The composer holds text someone typed and has not sent: the prompt waits until it is sent or cleared."""


def deliver_prompt(tmux: TmuxServer, session: str, text: str, *, lock_dir: Path, timeout: float = 10.0,
                   cancel: threading.Event | None = None) -> None:
    """Submit `text` as one prompt to the agent in `session`'s pane and check that it was submitted.

    `lock_dir` holds one lock file per session, so two deliveries to one worker never interleave. `timeout`
    (seconds) bounds each wait (the lock, the composer, the text showing, the submission). Raises ComposerHeld
    when the composer holds someone's unsent text (nothing was sent), DeliveryError otherwise (also for a tmux
    failure, an empty text, or `cancel` set during a wait); the caller decides whether to retry.
    """
    text = as_plain_text(normalize(text))
    if not text.strip():
        raise DeliveryError(f"nothing to deliver to {session}: the prompt is empty")
    try:
        check_session_name(session)
        lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with FileLock(str(lock_dir / f"{session}.lock"), timeout=timeout, mode=0o600):
            _deliver(tmux, session, text, timeout, cancel or threading.Event())
    except Timeout:
        raise DeliveryError(f"another delivery to {session} held its lock for {timeout:.0f}s") from None
    except TmuxError as exc:
        raise DeliveryError(f"could not deliver to {session}: {exc}") from None


def normalize(text: str) -> str:
    """The text as it is delivered: CRLF and CR read as newlines, other control characters dropped."""
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def as_plain_text(text: str) -> str:
    """`text` as the agent must receive it to read it as a prompt: under a `[message]` line when its first
    non-blank character is one of COMMAND_MARKS, as it is otherwise."""
    return f"{PLAIN_HEADER}\n{text}" if text.lstrip().startswith(COMMAND_MARKS) else text


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


def unfaint(screen: str) -> str:
    """A screen captured with its escape sequences (`capture-pane -e`) as plain text, without the text drawn
    faint (SGR 2, as agents draw an empty composer's placeholder). The cursor's one reverse-video cell (SGR 7)
    just before faint text is the placeholder's first character (claude-code 2.1.332 draws "Resend your message
    to try again" so, after an API error) and goes too."""
    runs: list[tuple[str, bool, bool]] = []  # (text, faint, reverse)
    faint = reverse = False
    at = 0
    for match in [*_SGR.finditer(screen), None]:
        end = match.start() if match else len(screen)
        if end > at:
            runs.append((screen[at:end], faint, reverse))
        if match:
            (faint, reverse), at = _style_after((faint, reverse), match.group(1)), match.end()
    out = []
    for i, (text, faint, reverse) in enumerate(runs):
        cursor = reverse and len(text) == 1 and i + 1 < len(runs) and runs[i + 1][1]
        out.append("\n" * text.count("\n") if faint or cursor else text)  # rows stay rows
    return _OTHER_ESCAPE.sub("", "".join(out))


def _style_after(style: tuple[bool, bool], params: str) -> tuple[bool, bool]:
    """(faint, reverse) after an SGR sequence with `params` (`2` and `7` set them, `22` and `27` reset them, `0` or
    nothing resets both; the colour arguments of `38`, `48`, `58` are skipped)."""
    faint, reverse = style
    codes = [p.split(":")[0] for p in params.split(";")] if params else ["0"]
    i = 0
    while i < len(codes):
        code = codes[i]
        if code in ("38", "48", "58"):
            i += 3 if codes[i + 1:i + 2] == ["5"] else 5 if codes[i + 1:i + 2] == ["2"] else 1
            continue
        if code in ("", "0"):
            faint = reverse = False
        faint = True if code == "2" else False if code == "22" else faint
        reverse = True if code == "7" else False if code == "27" else reverse
        i += 1
    return faint, reverse


def typed_text(tmux: TmuxServer, session: str) -> str:
    """The text in the composer of `session`'s agent that is not the agent's faint placeholder ("" when none)."""
    return composer(unfaint(tmux.screen(session, styles=True))) or ""


def _deliver(tmux: TmuxServer, session: str, text: str, timeout: float, cancel: threading.Event) -> None:
    def look() -> str | None:
        if cancel.is_set():
            raise DeliveryError(f"the delivery to {session} was cancelled")
        return composer(tmux.screen(session))

    tmux.leave_copy_mode(session)
    before = _wait(look, timeout, lambda c: c is not None,
                   f"{session} shows no agent composer")
    held = typed_text(tmux, session)
    if held:
        raise ComposerHeld(f"the composer of {session} holds text someone typed and has not sent "
                           f"({held[:40]!r}): the prompt waits until it is sent or cleared")
    if needs_paste(text):
        buffer = f"swarmd-{os.getpid()}-{next(_counter)}"
        tmux.load_buffer(buffer, text)
        try:
            tmux.paste_buffer(session, buffer)
        finally:
            tmux.delete_buffer(buffer)
    else:
        tmux.send_keys(session, text, enter=False)
    shown = _settled(look, timeout, lambda c: bool(c) and c != before,
                     f"the prompt never showed in {session}'s composer")
    for wait in (timeout / 4, timeout):  # the second Enter only when the first was not taken
        tmux.send_keys(session, "", enter=True)
        if _submitted(look, shown, wait):
            return
    raise DeliveryError(f"the prompt still sits in {session}'s composer after Enter was pressed twice")


def _submitted(look: Callable[[], str | None], shown: str, timeout: float) -> bool:
    """Whether the composer stopped showing the pasted text within `timeout` s."""
    try:
        _wait(look, timeout, lambda c: c != shown, "")
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

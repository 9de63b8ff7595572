"""Prompt delivery into the real Claude Code TUI in tmux: each random prompt (unicode, a `;` at the end, `@file`,
20 KB, blank lines, paths, a first character that switches claude's composer into a mode: `/`, `!`, `#`, `?`,
`@`) is submitted exactly once, as one turn, as plain text, and none is lost; also into a pane left in copy
mode; and never while a person's unsent text sits in the composer. Claude talks to a model on 127.0.0.1 that refuses each request, so every turn ends at once."""

import json
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agentclis import RefusingModel
from claudepane import start_claude, user_turns, wait_for_composer
from swarmd.home import SwarmHome
from swarmd.workers.delivery import (ComposerHeld, DeliveryError, as_plain_text, composer, deliver_prompt,
                                     needs_paste, normalize, typed_text, unfaint)
from swarmd.workers.panestate import PaneState, PaneWatcher
from swarmd.workers.promptqueue import PromptQueue
from swarmd.workers.tmux import TmuxServer
from swarmkit import wait_until

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

WORDS = ["fix", "the", "parser", "ünïcødé", "naïve", "日本語のテキスト", "Ελληνικά", "кириллица", "emoji 🚀✨",
         "tab\there", "a/b/c.py", "/tmp/out.txt", "x = y;", "$HOME", "`code`", "'quoted'", '"double"',
         "#hash", "50%", "a\\b", "<tag>", "{brace}", "C-c", "Enter", "-- --", "~/.bashrc"]
# Starts that claude-code 2.1.332 reads as a command (`/clear` clears the session, `/help` opens a dialog), a
# shell line (`!`), or that switch its composer's mode when typed (`#`, `?`, `@`).
MODE_STARTS = ["/clear ", "!echo ", "#", "?", "@notes.md ", "/help "]


def random_prompt(rng: random.Random, index: int) -> str:
    """A prompt that starts with its own marker (every fourth one with a mode character before it) and mixes the
    cases delivery must survive."""
    lines = [" ".join(rng.choices(WORDS, k=rng.randint(1, 12))) for _ in range(rng.randint(1, 6))]
    kind = index % 6
    if kind == 1:
        lines[-1] += ";"
    elif kind == 2:
        lines.insert(rng.randrange(len(lines) + 1), "see @notes.md and @src/app.py")
    elif kind == 3:
        lines.extend(["", "", "after two blank lines"])
    elif kind == 4 and index % 12 == 4:
        lines.append("".join(rng.choices("abcdefghij klmnop\n", k=20_000)))
    text = "\n".join(lines)
    start = MODE_STARTS[index // 4 % len(MODE_STARTS)] if index % 4 == 3 else ""
    return start + (f"P{index:03d}Q {text}" if kind != 5 else f"P{index:03d}Q short and plain;")


@contextmanager
def claude_pane(claude: Path, tmux: TmuxServer, root: Path, session: str) -> Iterator[tuple]:
    """(claude's config dir, model) with the claude TUI in `session` idle at its composer."""
    with RefusingModel(hold_timeout=0).running() as model:
        model.release.set()
        config_dir, project = start_claude(tmux, session, claude, root, model.url)
        (project / "notes.md").write_text("notes\n")
        (project / "src").mkdir()
        (project / "src" / "app.py").write_text("print('app')\n")
        wait_for_composer(tmux, session)
        yield config_dir, model
    tmux.kill_session(session)


def deliver_all(claude: Path, tmux: TmuxServer, tmp_path: Path, count: int, per_agent: int) -> None:
    """Deliver `count` random prompts, `per_agent` to each fresh claude, and check each agent's turns."""
    rng = random.Random(20261130)
    prompts = [random_prompt(rng, i) for i in range(count)]
    for first in range(0, count, per_agent):
        session = f"agent{first}"
        with claude_pane(claude, tmux, tmp_path / session, session) as (config_dir, model):
            batch = list(enumerate(prompts))[first:first + per_agent]
            deliver_batch(tmux, session, config_dir, batch, tmp_path / "locks")
            check_turns(user_turns(config_dir), model, batch)


def deliver_batch(tmux: TmuxServer, session: str, config_dir: Path, batch: list[tuple[int, str]],
                  locks: Path) -> None:
    watcher = PaneWatcher(tmux, session)
    for index, prompt in batch:
        if index % 7 == 3:
            subprocess.run(["tmux", "-S", str(tmux.socket_path), "copy-mode", "-t", f"={session}:"], check=True)
        deliver_prompt(tmux, session, prompt, lock_dir=locks, timeout=30)
        marker = f"P{index:03d}Q"
        wait_until(lambda: any(marker in turn for turn in user_turns(config_dir)), 60, f"turn {marker}")
        wait_until(lambda: watcher.look().state == PaneState.IDLE, 60, f"claude idle after {marker}")


def check_turns(turns: list[str], model: RefusingModel, batch: list[tuple[int, str]]) -> None:
    for index, prompt in batch:
        marker = f"P{index:03d}Q"
        holding = [turn for turn in turns if marker in turn]
        assert len(holding) == 1, f"{marker} was submitted {len(holding)} times"
        expected = normalize(prompt).strip().replace("\t", "    ")  # claude's composer turns a tab into 4 spaces
        assert expected in holding[0], f"{marker} did not arrive whole"
        assert model.received(marker)
    assert len(turns) == len(batch), "a prompt was split into more than one turn"


@pytest.fixture
def tmux(swarm_home: SwarmHome) -> TmuxServer:
    swarm_home.ensure_dirs()
    return TmuxServer(swarm_home.tmux_socket)


def test_random_prompts_are_each_submitted_once_as_one_turn(agent_clis: dict[str, Path], tmux: TmuxServer,
                                                             tmp_path: Path) -> None:
    deliver_all(agent_clis["claude"], tmux, tmp_path, 20, per_agent=20)


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_two_hundred_random_prompts(agent_clis: dict[str, Path], tmux: TmuxServer, tmp_path: Path) -> None:
    deliver_all(agent_clis["claude"], tmux, tmp_path, 200, per_agent=20)  # a fresh agent for each 20


def test_what_is_pasted_and_what_is_typed() -> None:
    assert not needs_paste("continue with the next step")
    for text in ("two\nlines", "see @notes.md", "edit src/app.py", "x" * 300, "!ls", "look at main.py"):
        assert needs_paste(text), text
    assert normalize("a\r\nb\rc\x1b[201~d\x00") == "a\nb\nc[201~d"


def test_a_text_that_starts_with_a_command_mark_goes_under_a_header() -> None:
    assert as_plain_text("/clear the cache") == "[message]\n/clear the cache"
    assert as_plain_text("  !rm -rf build\nnow") == "[message]\n  !rm -rf build\nnow"
    for text in ("#hash", "?why", "@notes.md read it", "see /tmp", "plain"):
        assert as_plain_text(text) == text


# An empty Codex composer (0.171.0, captured with escapes): its placeholder is drawn faint; claude-code 2.1.332's
# composer with text a person typed.
CODEX_EMPTY = "\x1b[1m›\x1b[0m\x1b[39m\x1b[49m \x1b[2mAsk Codex to do anything\n\x1b[0m\x1b[39m\x1b[49m\n  \x1b[38;5;223mgpt"
CLAUDE_TYPED = ("\x1b[38;5;244m" + "─" * 20 + "\n\x1b[39m❯\xa0typed by a person\x1b[7m\n\x1b[0m\x1b[38;5;244m\x1b[49m"
                + "─" * 20 + "\n")


def test_a_faint_placeholder_is_not_text_someone_typed() -> None:
    assert composer(unfaint(CODEX_EMPTY)) == "" and composer(CODEX_EMPTY.replace("\x1b[2m", "")) != ""
    assert composer(unfaint(CLAUDE_TYPED)) == "typed by a person"
    assert unfaint("a\x1b[2mb\nc\x1b[22md\x1b[38;2;2;2;2me\x1b[2;38;5;2mf") == "a\nde"
    # claude after an API error: the cursor's cell holds the placeholder's first character
    assert composer(unfaint("❯\xa0\x1b[7mR\x1b[27m\x1b[2mesend your message to try again\n\x1b[22m")) == ""
    assert composer(unfaint("❯\xa0ab\x1b[7mc\x1b[27m\n")) == "abc"  # a person's text with the cursor on it


def test_a_persons_unsent_text_holds_a_steer_until_it_is_sent(agent_clis: dict[str, Path], tmux: TmuxServer,
                                                             tmp_path: Path) -> None:
    with claude_pane(agent_clis["claude"], tmux, tmp_path / "agent", "agent") as (config_dir, model):
        tmux.send_keys("agent", "NOTE-1 half a thought", enter=False)  # typed by a person, not sent
        wait_until(lambda: typed_text(tmux, "agent") == "NOTE-1 half a thought", 30, "the person's text shown")
        queue = PromptQueue(tmp_path / "run", "w1")
        queue.push("STEER-2 use the v2 API", sender="operator")
        locks = tmp_path / "locks"
        with pytest.raises(ComposerHeld, match="holds text someone typed"):
            queue.flush(tmux, "agent", lambda: True, lock_dir=locks, timeout=30)
        assert composer(tmux.screen("agent")) == "NOTE-1 half a thought"  # neither destroyed nor added to
        assert len(queue.items()) == 1 and not model.received("STEER-2")
        tmux.press("agent", "Enter")  # the person sends it
        wait_until(lambda: model.received("NOTE-1"), 60, "the person's text sent")
        watcher = PaneWatcher(tmux, "agent")
        wait_until(lambda: watcher.look().state == PaneState.IDLE, 60, "claude idle again")
        assert queue.flush(tmux, "agent", lambda: True, lock_dir=locks, timeout=30) == 1
        wait_until(lambda: len(user_turns(config_dir)) == 2, 60, "the steer's turn")
        assert user_turns(config_dir) == ["NOTE-1 half a thought", "[steer from operator]\nSTEER-2 use the v2 API"]


def test_an_empty_prompt_or_a_pane_without_a_composer_is_refused(tmux: TmuxServer, tmp_path: Path) -> None:
    tmux.spawn("plain", ["sh", "-c", "echo a shell, no agent; exec sleep 60"], env={}, cwd=tmp_path)
    with pytest.raises(DeliveryError, match="empty"):
        deliver_prompt(tmux, "plain", " \n ", lock_dir=tmp_path / "locks")
    with pytest.raises(DeliveryError, match="no agent composer"):
        deliver_prompt(tmux, "plain", "hello", lock_dir=tmp_path / "locks", timeout=0.5)


def dropping_tui(tmux: TmuxServer, tmp_path: Path, drop: int) -> Path:
    out = tmp_path / "submitted.jsonl"
    tmux.spawn("tui", [sys.executable, str(Path(__file__).parent / "droppingtui.py"), str(out), "--drop", str(drop)],
               env={}, cwd=tmp_path)
    return out


def submitted(out: Path) -> list[str]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def test_enter_is_sent_again_once_when_the_text_still_sits_in_the_composer(tmux: TmuxServer, tmp_path: Path) -> None:
    out = dropping_tui(tmux, tmp_path, drop=1)
    deliver_prompt(tmux, "tui", "first line\nsecond line;", lock_dir=tmp_path / "locks", timeout=5)
    assert submitted(out) == ["first line\nsecond line;"]
    deliver_prompt(tmux, "tui", "plain words", lock_dir=tmp_path / "locks", timeout=5)
    assert submitted(out) == ["first line\nsecond line;", "plain words"]


def test_a_prompt_never_submitted_is_an_error_after_the_second_enter(tmux: TmuxServer, tmp_path: Path) -> None:
    out = dropping_tui(tmux, tmp_path, drop=2)
    with pytest.raises(DeliveryError, match="still sits"):
        deliver_prompt(tmux, "tui", "see @notes.md", lock_dir=tmp_path / "locks", timeout=2)
    tmux.press("tui", "Enter")  # a third Enter (not sent by delivery) is the one the TUI takes
    wait_until(lambda: submitted(out) == ["see @notes.md"], 30, "the third Enter taken")

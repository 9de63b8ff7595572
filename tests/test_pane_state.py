"""The pane-state fallback: real screens of claude-code 2.1.332 and codex 0.171.0 (captured from their TUIs in
tmux, under tests/panes/), the two-quiet-looks rule, reset times, the process tree, and dialogs answered by
label in a real claude pane."""

import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from agentclis import RefusingModel
from claudepane import start_claude, wait_for_composer
from swarmd.errors import SwarmError
from swarmd.home import SwarmHome
from swarmd.workers.dialogs import answer_dialog, parse_dialog
from swarmd.workers.panestate import CLAUDE, CODEX, PaneState, PaneWatcher, parse_reset, process_alive, read_screen
from swarmd.workers.tmux import TmuxServer
from swarmkit import wait_until

PANES = Path(__file__).parent / "panes"
NOW = datetime(2026, 11, 30, 10, 0, tzinfo=timezone.utc)


def screen(name: str) -> str:
    return (PANES / f"{name}.txt").read_text()


@pytest.mark.parametrize("name, busy, has_composer, dialog", [
    ("claude-idle", False, True, False), ("claude-working", True, True, False),
    ("claude-trust", False, False, True), ("claude-apikey", False, False, True),
    ("claude-perm", False, True, True), ("claude-ratelimit", False, True, False),
    ("codex-idle", False, True, False), ("codex-working", True, True, False),
])
def test_real_screens_are_read(name: str, busy: bool, has_composer: bool, dialog: bool) -> None:
    reading = read_screen(screen(name), CODEX if name.startswith("codex") else CLAUDE)
    assert reading.busy is busy
    assert (reading.composer is not None) is has_composer
    assert (reading.dialog is not None) is dialog
    assert (reading.limit is not None) is (name == "claude-ratelimit")


def test_dialogs_give_their_text_and_options() -> None:
    perm = parse_dialog(screen("claude-perm"))
    assert perm is not None and "rm -rf build" in perm.text and "Do you want to proceed?" in perm.text
    assert perm.options[0] == "Yes" and perm.options[-1] == "No" and len(perm.options) == 4
    assert perm.selected == 0 and perm.destructive
    assert perm.choose("no") == 3 and perm.choose("4") == 3 and perm.choose("Yes, and switch") == 2
    with pytest.raises(ValueError, match="more than one"):
        perm.choose("Yes, and")
    trust = parse_dialog(screen("claude-trust"))
    assert trust is not None and trust.options == ("No, exit", "Yes, I trust this folder") and trust.selected == 0
    assert "Quick safety check" in trust.text and not trust.destructive
    key = parse_dialog(screen("claude-apikey"))
    assert key is not None and key.options == ("Yes", "No (recommended)") and key.selected == 1
    assert parse_dialog(screen("claude-idle")) is None and parse_dialog(screen("codex-working")) is None


def test_idle_only_after_two_quiet_looks_with_the_same_screen() -> None:
    watcher = PaneWatcher(tmux=None, session="w", now=lambda: NOW)  # type: ignore[arg-type]
    working, idle = read_screen(screen("claude-working"), CLAUDE), read_screen(screen("claude-idle"), CLAUDE)
    assert watcher.judge(read_screen("starting...\n", CLAUDE)).state == PaneState.STARTING
    assert watcher.judge(working).state == PaneState.WORKING
    assert watcher.judge(idle).state == PaneState.WORKING  # one quiet look is not enough
    assert watcher.judge(idle).state == PaneState.IDLE
    assert watcher.judge(working).state == PaneState.WORKING
    silent = read_screen("a screen that stopped changing, no composer\n", CLAUDE)
    for _ in range(3):  # silence alone is never idleness
        assert watcher.judge(silent).state == PaneState.WORKING
    look = watcher.judge(read_screen(screen("claude-perm"), CLAUDE))
    assert look.state == PaneState.NEEDS_INPUT and look.reading.dialog.options[-1] == "No"
    limited = watcher.judge(read_screen(screen("claude-ratelimit"), CLAUDE))
    assert limited.state == PaneState.RATE_LIMITED and limited.resets_at is None


@pytest.mark.parametrize("notice, expected", [
    ("Claude AI usage limit reached|1796036400", datetime(2026, 11, 30, 11, 0, tzinfo=timezone.utc)),
    ("You've hit your usage limit. Try again in 2 hours 3 minutes.", NOW + timedelta(hours=2, minutes=3)),
    ("5-hour limit reached ∙ resets 3pm", datetime(2026, 11, 30, 15, 0, tzinfo=timezone.utc)),
    ("limit reached · resets at 9:30am (UTC)", datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)),
    ("Weekly limit reached ∙ resets 5pm (Europe/Paris)", datetime(2026, 11, 30, 16, 0, tzinfo=timezone.utc)),
    ("API Error: Request rejected (429) · Rate limited", None),
])
def test_reset_times(notice: str, expected: datetime | None) -> None:
    assert parse_reset(notice, NOW) == expected


def test_a_process_tree_is_alive_while_any_member_runs(tmp_path: Path) -> None:
    parent = subprocess.Popen(["sh", "-c", "sleep 60 & wait"])
    try:
        assert process_alive(parent.pid)
    finally:
        parent.kill()
        parent.wait()
    assert not process_alive(parent.pid)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_a_dialog_is_answered_by_its_label_in_claude(agent_clis: dict[str, Path], swarm_home: SwarmHome,
                                                      tmp_path: Path) -> None:
    swarm_home.ensure_dirs()
    tmux = TmuxServer(swarm_home.tmux_socket)
    with RefusingModel(hold_timeout=0).running() as model:
        model.release.set()
        start_claude(tmux, "agent", agent_clis["claude"], tmp_path / "claude", model.url, trust=False)
        watcher = PaneWatcher(tmux, "agent")
        look = wait_until(lambda: (l := watcher.look()).state == PaneState.NEEDS_INPUT and l, 60, "the trust dialog")
        assert "trust" in look.reading.dialog.options[1]
        with pytest.raises(SwarmError, match="names no option"):
            answer_dialog(tmux, "agent", "maybe")
        assert answer_dialog(tmux, "agent", "yes, i trust", timeout=60) == "Yes, I trust this folder"
        wait_for_composer(tmux, "agent")
        assert wait_until(lambda: watcher.look().state == PaneState.IDLE, 60, "claude idle at its composer")


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_a_destructive_dialog_is_not_answered_unasked(swarm_home: SwarmHome, tmp_path: Path) -> None:
    swarm_home.ensure_dirs()
    tmux = TmuxServer(swarm_home.tmux_socket)
    tmux.spawn("agent", [sys.executable, "-c", "import sys, time; sys.stdout.write(open(sys.argv[1]).read()); "
                         "sys.stdout.flush(); time.sleep(60)", str(PANES / "claude-perm.txt")], env={}, cwd=tmp_path)
    wait_until(lambda: parse_dialog(tmux.screen("agent")), 30, "the dialog on screen")
    with pytest.raises(SwarmError, match="destructive"):
        answer_dialog(tmux, "agent", "Yes")

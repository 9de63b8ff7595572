"""Interactive Codex workers (the `codex-tui` profile) with the real codex 0.171.0 TUI in tmux against the scripted
model: the task's multi-line prompt is pasted into the pane and taken as one turn, the agent writes the file
through its shell tool and reports DONE with `agentmail`, the task validates, its own lifecycle hooks (trusted
before launch) report starting -> working -> idle, and once the worker's session ends no process of it is left
(codex's app-server daemon would outlive the TUI). Its dialogs are read from real screens."""

import contextlib
import os
import signal
from pathlib import Path

import pytest

from agentclis import agent_env
from conftest import run_cli
from modelserver import ModelServer, Text, WriteFile, from_prompt
from protocol.event import EventType
from protocol.task import TaskStatus
from swarmd.home import SwarmHome
from swarmd.ledger.log import Ledger
from swarmd.workers.panestate import CODEX, PaneState, PaneWatcher, read_screen
from swarmkit import events, init_home, wait_until, write_plan

REPORT = r"^\s*agentmail send .*--type {kind} .*$"
PANES = Path(__file__).parent / "panes"


def processes_using(path: Path) -> dict[int, str]:
    """The live processes (pid: command line) whose command line or environment names `path` (a worker's
    CODEX_HOME): a codex TUI, its app-server daemon, a shell it started."""
    found = {}
    needle = str(path).encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue  # ended while we looked, or not ours to read
        if state != "Z" and (needle in cmdline or needle in environ):
            found[int(pid)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return found


def agent_states(home: SwarmHome, worker: str) -> list[str]:
    return [e.detail["fields"]["metadata"]["agent_state"] for e in events(home)
            if e.type == EventType.AGENT_UPDATED and e.detail.get("name") == worker
            and "agent_state" in e.detail["fields"].get("metadata", {})]


def test_interactive_codex_takes_its_prompt_as_one_turn_reports_done_and_leaves_no_process(
        agent_clis: dict[str, Path], model_server: ModelServer, swarm_home: SwarmHome, tmp_path: Path) -> None:
    project = swarm_home.root.parent
    model_server.script([Text("On it."), from_prompt(REPORT.format(kind="PROGRESS"))],
                        [WriteFile(str(project / "out.txt"), "made in the pane\n")],
                        [from_prompt(REPORT.format(kind="DONE"))],
                        [Text("All done.")])
    init_home(swarm_home, max_workers=1)
    with open(swarm_home.config_file, "a") as config:
        config.write("shutdown_grace = 10.0\n")  # time for its last turn, then its session is ended
    plan = write_plan(tmp_path / "plan.json", [{
        "id": "job", "title": "write out.txt", "profile": "codex-tui",
        "description": "Write out.txt.\n\nIt says: made in the pane.\n\nThen report DONE.",
        "validation": {"checks": [{"kind": "content_check", "path": "out.txt", "pattern": "made in the pane"}]}}])
    env = {**agent_env(tmp_path / "clis", model_server.url), "OPENAI_API_KEY": "sk-test-0000"}
    user_config = Path(env["CODEX_HOME"]) / "config.toml"  # the user's model: without one the TUI (0.171.0)
    user_config.write_text('model = "gpt-test"\n' + user_config.read_text())  # picks its own, offered no tools
    assert run_cli("swarm", "run", str(plan), "--home", str(swarm_home.root), env=env).returncode == 0
    codex_home = (swarm_home.run_dir / "agents" / "w1" / "codex").resolve()
    try:
        ledger = Ledger(swarm_home)
        wait_until(lambda: ledger.task("job").status == TaskStatus.DONE, 120, "the task to be validated")
        worker = ledger.task("job").attempts[-1].worker
        assert worker == "w1"
        wait_until(lambda: "idle" in agent_states(swarm_home, worker), 60, "the agent idle after its turn")
        wait_until(lambda: not processes_using(codex_home), 60, "every process of the ended worker gone")
    finally:
        run_cli("swarm", "down", "--home", str(swarm_home.root))
        for pid in processes_using(codex_home):  # what a failing run left behind must not outlive the test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    first = model_server.scripted()[0].text()
    assert "It says: made in the pane.\n\nThen report DONE." in first, "the multi-line prompt is one turn"
    assert sum("# Task job: write out.txt" in r.text() for r in model_server.scripted()[:1]) == 1
    states = agent_states(swarm_home, worker)
    assert states[:3] == ["starting", "working", "idle"], states  # SessionStart, UserPromptSubmit: the hooks ran
    progress = [e for e in events(swarm_home) if e.type == EventType.PROGRESS and e.agent == worker]
    assert progress, "the agent's own PROGRESS reached the ledger"
    assert not (codex_home / "packages").exists(), "no app-server daemon was installed for the worker"


@pytest.mark.parametrize("name, options, destructive", [
    ("codex-approval", ("Yes, proceed (y)", "Yes, and don't ask again for commands that start with `rm -rf build` (p)",
                        "No, and tell Codex what to do differently (esc)"), True),
    ("codex-hooks-review", ("Review hooks", "Trust all and continue", "Continue without trusting (hooks won't run)"),
     False),
])
def test_codex_dialogs_are_read_from_real_screens(name: str, options: tuple[str, ...], destructive: bool) -> None:
    """codex 0.171.0 marks the selected option in column 0, where its composer starts: the screen is a dialog
    (needs_input, never idle) with its text and options, not a composer holding text."""
    reading = read_screen((PANES / f"{name}.txt").read_text(), CODEX)
    assert reading.dialog is not None and reading.dialog.options == options and reading.dialog.selected == 0
    assert reading.dialog.destructive is destructive
    assert ("rm -rf build" in reading.dialog.text) is destructive and "OpenAI Codex" not in reading.dialog.text
    watcher = PaneWatcher(tmux=None, session="w", agent=CODEX)  # type: ignore[arg-type]
    assert [watcher.judge(reading).state for _ in range(3)] == [PaneState.NEEDS_INPUT] * 3


def test_codex_working_idle_and_limited_screens() -> None:
    """Real codex 0.171.0 screens: its "Working" bullet blinks to "◦" while a tool runs (busy either way); a 429
    from the provider ends the turn with "last status: 429" under the prompt (rate limited, no reset time)."""
    idle, busy, limited = (read_screen((PANES / f"{name}.txt").read_text(), CODEX)
                           for name in ("codex-idle", "codex-working-tool", "codex-ratelimit"))
    assert busy.busy and not idle.busy and idle.dialog is None and busy.dialog is None
    assert read_screen("◦ Working (3s)\n\n› Ask Codex to do anything\n", CODEX).busy
    assert limited.limit is not None and "429" in limited.limit and idle.limit is None and not limited.busy
    watcher = PaneWatcher(tmux=None, session="w", agent=CODEX)  # type: ignore[arg-type]
    look = watcher.judge(limited)
    assert look.state == PaneState.RATE_LIMITED and look.resets_at is None


# Written by codex 0.171.0's own "Trust all and continue" into config.toml for these hooks.json groups.
LOG = "/tmp/cx-scratch/hooklog"
CODEX_TRUSTED = [
    ("SessionStart", {"hooks": [{"type": "command", "command": f"echo SessionStart >> {LOG}; cat >> {LOG}"}]},
     "sha256:4a66604055fea845859ed60731541d7c7c3ffc07c5e14afc903765cb24c9bbcd"),
    ("PreToolUse", {"matcher": "*",
                    "hooks": [{"type": "command", "command": f"echo PreToolUse >> {LOG}; cat >> {LOG}"}]},
     "sha256:fd1d52e9676d49a6b98a6467ee21c755f07e761c12c5a6096fc123c266d797fa"),
]


@pytest.mark.parametrize("event, group, expected", CODEX_TRUSTED)
def test_hook_trust_hash_is_the_one_codex_writes(event: str, group: dict, expected: str) -> None:
    from swarmd.agents.codex import trust_hash
    assert trust_hash(event, group) == expected


def test_worker_config_keeps_the_users_tables_and_adds_trust_and_no_daemon(swarm_home: SwarmHome,
                                                                          tmp_path: Path) -> None:
    """The user's config.toml (with its own `[features]`) is carried over; the daemon is switched off inside
    their table, each of our hooks is trusted by its hooks.json key, and the result is valid TOML."""
    import tomllib

    from swarmd.agents.base import WorkerSetup
    from swarmd.agents.codex import HOOK_EVENTS, CodexAgent
    swarm_home.ensure_dirs()
    user = tmp_path / "user-codex"
    user.mkdir()
    (user / "config.toml").write_text('model = "gpt-test"\n\n[features]\nplugins = false\n')
    setup = WorkerSetup(home=swarm_home.root, worker="w1", task="job", workdir=tmp_path,
                        agent_dir=swarm_home.run_dir / "agents" / "w1", env={"CODEX_HOME": str(user)})
    codex_home = Path(CodexAgent().prepare(setup)["CODEX_HOME"])
    config = tomllib.loads((codex_home / "config.toml").read_text())
    assert config["model"] == "gpt-test" and config["features"] == {"plugins": False, "daemon_auto_start": False}
    states = config["hooks"]["state"]
    assert sorted(states) == sorted(f"{codex_home / 'hooks.json'}:{key}:0:0" for key in (
        "session_start", "user_prompt_submit", "pre_tool_use", "post_tool_use", "permission_request", "stop",
        "session_end"))
    assert len(HOOK_EVENTS) == len(states) and all(s["trusted_hash"].startswith("sha256:") for s in states.values())

"""An interactive agent's pane is a terminal with its styles: `CI` and `NO_COLOR` from the supervisor's environment
(a swarm run inside a CI job) do not reach it, or claude-code would draw its composer's faint placeholder as plain
text and every delivery would be held as if a person had typed it."""

from pathlib import Path

from conftest import run_cli
from swarmkit import init_home, wait_until, write_plan

from swarmd.home import SwarmHome

PROFILES = """
[profiles.tui]
command = "env > {env_file}; exec sleep 600"
mode = "interactive"

[profiles.plain]
command = "env > {plain_file}; exec sleep 600"
"""


def _environment(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_an_interactive_agent_gets_no_ci_or_no_color_and_a_headless_one_keeps_them(swarm_home: SwarmHome,
                                                                                   tmp_path: Path) -> None:
    init_home(swarm_home, max_workers=2, stale=600)  # the panes send no heartbeats: never stale in the test
    env_file, plain_file = tmp_path / "tui.env", tmp_path / "plain.env"
    with swarm_home.config_file.open("a") as config:
        config.write(PROFILES.format(env_file=env_file, plain_file=plain_file))
    plan = write_plan(tmp_path / "plan.json", [
        {"id": "tui", "title": "an interactive agent", "description": "work", "profile": "tui"},
        {"id": "plain", "title": "a headless agent", "description": "work", "profile": "plain"}])
    home = ["--home", str(swarm_home.root)]
    outside = {"CI": "true", "NO_COLOR": "1"}
    assert run_cli("swarm", "run", str(plan), *home, env=outside).returncode == 0
    try:
        wait_until(lambda: env_file.exists() and plain_file.exists() and "SWARM_AGENT=" in env_file.read_text()
                   and "SWARM_AGENT=" in plain_file.read_text(), 60, "both agents to write their environment")
        tui, plain = _environment(env_file), _environment(plain_file)
        assert "CI" not in tui and "NO_COLOR" not in tui, tui
        assert plain.get("CI") == "true" and plain.get("NO_COLOR") == "1", "a headless agent's environment is as given"
    finally:
        run_cli("swarm", "down", "--teardown", *home)

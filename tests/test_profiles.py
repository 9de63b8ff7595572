"""The built-in profiles against the real CLIs they start (pinned in tests/package.json): every flag a profile
passes must be one the CLI's own argument parser accepts, and the prompt goes by stdin, never by argv."""

import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agentclis import agent_env
from agentmail import PostOffice
from conftest import REPO, run_cli
from swarmd.config import DEFAULT_PROFILES, DEFAULT_TOML
from swarmd.home import SwarmHome
from swarmd.workers.spawner import render_command
from swarmd.workers.wrapper import parse_args
from swarmkit import init_home

# What each CLI prints when it has parsed its arguments and then finds the prompt on stdin empty: a run that
# gets this far had every flag accepted, and needs no model.
PARSED = {"claude": "Input must be provided either through stdin", "codex": "No prompt provided via stdin"}
OLD_CODEX = '{python} -m swarmd.worker -- codex exec --full-auto "$(cat {prompt_file})"'


def agent_part(template: str, prompt_file: Path) -> tuple[list[str], Path | None]:
    """Render a profile's command as the spawner does and split off the agent's argv the way the wrapper does."""
    rendered = render_command(template, {"prompt_file": str(prompt_file), "task_id": "t1", "agent": "w1",
                                         "home": "/nonexistent", "python": sys.executable,
                                         "session_id": "3f0e2a49-8d0b-4d5e-9a56-0d9f0c2b7e11"})
    argv = shlex.split(rendered)
    assert argv[:3] == [sys.executable, "-m", "swarmd.worker"], rendered
    opts = parse_args(argv[3:])
    return opts.command, opts.prompt_stdin


def parse_with_real_cli(clis: dict[str, Path], argv: list[str], stdin: Path, tmp_path: Path,
                        ) -> subprocess.CompletedProcess[str]:
    """Run the agent's argv with the pinned CLI in place of its name, an empty prompt on stdin, no network."""
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    env = {**os.environ, **agent_env(tmp_path, "http://127.0.0.1:9")}
    with open(stdin, "rb") as prompt:
        return subprocess.run([str(clis[argv[0]]), *argv[1:]], stdin=prompt, capture_output=True, text=True,
                              cwd=workdir, env=env, timeout=120, check=False)


@pytest.mark.parametrize("name", ["claude", "codex"])
def test_builtin_agent_profile_passes_only_flags_its_cli_accepts(name: str, agent_clis: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    prompt_file = tmp_path / "prompt.md"
    prompt_file.write_text("")
    argv, stdin = agent_part(DEFAULT_PROFILES[name].command, prompt_file)
    assert argv[0] == name
    assert stdin == prompt_file, "the prompt goes to the agent on stdin"
    assert not any(str(prompt_file) in arg for arg in argv), "and neither it nor its path is in the agent's argv"
    result = parse_with_real_cli(agent_clis, argv, stdin, tmp_path)
    assert PARSED[name] in result.stdout + result.stderr, (argv, result.stdout, result.stderr)


@pytest.mark.parametrize(("name", "template", "refusal"), [
    ("codex", OLD_CODEX, "unexpected argument '--full-auto'"),
    ("claude", "{python} -m swarmd.worker --prompt-stdin {prompt_file} -- claude -p --no-such-flag",
     "unknown option '--no-such-flag'"),
])
def test_flag_check_refuses_flags_the_pinned_cli_does_not_know(name: str, template: str, refusal: str,
                                                               agent_clis: dict[str, Path], tmp_path: Path) -> None:
    """The check above is a real one: the profiles swarmd shipped before (codex's `--full-auto`) fail it."""
    prompt_file = tmp_path / "prompt.md"
    prompt_file.write_text("")
    argv, _ = agent_part(template, prompt_file)
    result = parse_with_real_cli(agent_clis, argv, prompt_file, tmp_path)
    assert PARSED[name] not in result.stdout + result.stderr
    assert refusal in result.stderr and result.returncode != 0


def test_commented_defaults_and_readme_show_the_builtin_profiles(tmp_path: Path) -> None:
    """`swarm init`'s swarm.toml and the README's snippet say what the built-in profiles are, never older ones."""
    written = tomllib.loads(DEFAULT_TOML)["profiles"]
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Workers and profiles"):]
    snippet = tomllib.loads(section[section.index("```toml") + 7:section.index("```\n", section.index("```toml"))])
    for name, profile in DEFAULT_PROFILES.items():
        assert written[name]["command"] == profile.command, name
        assert snippet["profiles"][name]["command"] == profile.command, name


def test_prompt_over_128_kib_reaches_the_command_on_stdin(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home)
    home = ["--home", str(swarm_home.root)]
    assert run_cli("swarm", "task", "add", "by hand", "--id", "manual", *home).returncode == 0
    prompt = tmp_path / "prompt.md"
    prompt.write_text("spec line\n" * (200 * 1024 // 10))
    copy = tmp_path / "received.md"
    for runner in (["swarm", "worker", "run"], [sys.executable, "-m", "swarmd.worker"]):
        copy.unlink(missing_ok=True)
        args = [*runner, "--agent", "me", "--task", "manual", *home, "--prompt-stdin", str(prompt), "--",
                "sh", "-c", f"cat > {shlex.quote(str(copy))}"]
        result = run_cli(*args) if runner[0] == "swarm" else subprocess.run(args, capture_output=True, text=True,
                                                                            timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert copy.read_bytes() == prompt.read_bytes()


@pytest.mark.parametrize(("args", "message"), [
    (["--prompt-stdin", "{missing}", "--", "cat"], "cannot read the prompt"),
    (["--script", "--prompt-stdin", "{missing}"], "a --script worker has none"),
])
def test_worker_usage_errors_are_one_line_and_exit_2(args: list[str], message: str, swarm_home: SwarmHome,
                                                     tmp_path: Path) -> None:
    init_home(swarm_home)
    assert run_cli("swarm", "task", "add", "by hand", "--id", "manual", "--home", str(swarm_home.root)).returncode == 0
    filled = [a.replace("{missing}", str(tmp_path / "missing.md")) for a in args]
    common = ["--agent", "me", "--task", "manual", "--home", str(swarm_home.root)]
    for result in (run_cli("swarm", "worker", "run", *common, *filled),
                   subprocess.run([sys.executable, "-m", "swarmd.worker", *common, *filled], capture_output=True,
                                  text=True, timeout=60, check=False)):
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    post = PostOffice(swarm_home.root)
    assert "supervisor" not in post.agents() or not post.mailbox("supervisor").list(), \
        "nothing is reported for a worker that could not start"

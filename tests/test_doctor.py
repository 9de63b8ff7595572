"""`swarm doctor` as a user runs it: one line per check, --json, and a non-zero exit when something is wrong."""

import json
import os
import re
from pathlib import Path

from conftest import run_cli
from swarmd.home import SwarmHome
from swarmkit import init_home

BARE_PATH = "/usr/bin:/bin"  # tmux and the usual tools, no agent CLI


def _doctor(home: SwarmHome, path: str, *args: str):  # noqa: ANN202
    return run_cli("swarm", "doctor", "--home", str(home.root), *args, env={"PATH": path})


def test_doctor_fails_on_a_missing_agent_cli_and_shows_its_version_once_there(swarm_home: SwarmHome,
                                                                              tmp_path: Path) -> None:
    init_home(swarm_home)
    with swarm_home.config_file.open("a") as f:
        f.write('default_profile = "claude"\n')
    missing = _doctor(swarm_home, BARE_PATH)
    assert missing.returncode == 1, missing.stdout + missing.stderr
    lines = missing.stdout.splitlines()
    assert any(re.fullmatch(r"fail\s+profile claude\s+`claude` is not on PATH", line) for line in lines), lines
    for check in ("tmux", "tmux socket", "inotify max_user_watches", "home", "free disk", "profile codex"):
        assert any(line[6:].startswith(check + " ") for line in lines), (check, lines)
    assert all(line.split()[0] in ("ok", "warn", "fail") for line in lines)

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "claude").write_text("#!/bin/sh\necho '2.0.1 (Claude Code)'\n")
    os.chmod(fake / "claude", 0o755)
    found = _doctor(swarm_home, f"{fake}:{BARE_PATH}", "--json")
    assert found.returncode == 0, found.stdout + found.stderr
    report = {f["check"]: f for f in json.loads(found.stdout)}
    assert report["profile claude"]["status"] == "ok"
    assert report["profile claude"]["detail"] == f"{fake / 'claude'}: 2.0.1 (Claude Code)"
    assert report["profile codex"]["status"] == "warn", "a profile no task uses by default only warns"
    assert report["home"]["status"] == "ok" and "0700" in report["home"]["detail"]
    socket = report["tmux socket"]
    assert socket["status"] == "ok" and f"{len(os.fsencode(swarm_home.tmux_socket))} of 107 bytes" in socket["detail"]
    assert report["tmux"]["detail"].startswith("tmux ")


def test_doctor_reports_an_unsafe_home_and_works_without_one(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home)
    os.chmod(swarm_home.root, 0o755)
    report = {f["check"]: f for f in json.loads(_doctor(swarm_home, BARE_PATH, "--json").stdout)}
    assert report["home"]["status"] == "warn" and "0755" in report["home"]["detail"]
    nowhere = run_cli("swarm", "doctor", "--json", cwd=tmp_path, env={"PATH": BARE_PATH})
    checks = {f["check"]: f["status"] for f in json.loads(nowhere.stdout)}
    assert checks["home"] == "warn" and checks["profile script"] == "ok"
    assert nowhere.returncode == 0, "no home yet is not a fault of the machine"

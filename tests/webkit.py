"""Helpers for dashboard tests: `swarm web` as a real process on a free loopback port, and its sign-in link."""

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from swarmd.home import SwarmHome


@dataclass
class Dashboard:
    url: str
    link: str
    proc: subprocess.Popen[str]


@contextmanager
def dashboard(home: SwarmHome, *args: str) -> Iterator[Dashboard]:
    """`swarm web --port 0 --link --json` for `home`, stopped (SIGTERM, then waited for) afterwards."""
    exe = Path(sys.executable).parent / "swarm"
    proc = subprocess.Popen([str(exe), "web", "--home", str(home.root), "--port", "0", "--link", "--json", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""  # blocks until it listens (or exits)
        if not line:
            raise AssertionError(f"swarm web did not start: {proc.stderr.read() if proc.stderr else ''}")
        said = json.loads(line)
        yield Dashboard(said["url"], said["link"], proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

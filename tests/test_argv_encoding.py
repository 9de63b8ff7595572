"""Text that is not UTF-8 reaching either CLI (a Latin-1 byte in argv, a lone surrogate written as a JSON
escape, the same on stdin): one line on stderr and exit 2, from real processes given raw bytes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentmail import PostOffice
from conftest import run_cli

LATIN1 = b"caf\xe9"  # "café" as Latin-1: not UTF-8, so Python decodes it to a lone surrogate
SURROGATE = '"\\udce9"'  # a JSON string whose escape decodes to a lone surrogate

AGENTMAIL_SEND = ["send", "--from", "sup", "--to", "w1", "--type", "PROGRESS", "--task", "t-1"]
CASES = {
    "json escape in a text field": (AGENTMAIL_SEND + ["--field", f"step={SURROGATE}"], None),
    "latin-1 byte in a text field": (AGENTMAIL_SEND + ["--field", b"step=" + LATIN1], None),
    "latin-1 byte in an extra field": (AGENTMAIL_SEND + ["--field", b"note=" + LATIN1], None),
    "json escape in an extra field": (AGENTMAIL_SEND + ["--field", f"note={SURROGATE}"], None),
    "latin-1 byte in a field name": (AGENTMAIL_SEND + ["--field", LATIN1 + b"=1"], None),
    "latin-1 byte in --reply-to": (AGENTMAIL_SEND + ["--reply-to", LATIN1], None),
    "latin-1 byte in --body-json": (AGENTMAIL_SEND + ["--body-json", b'{"note": "' + LATIN1 + b'"}'], None),
    "json escape in --body-json": (AGENTMAIL_SEND + ["--body-json", '{"note": ' + SURROGATE + "}"], None),
    "json escape on stdin": (AGENTMAIL_SEND + ["--body-json", "-"], ('{"note": ' + SURROGATE + "}").encode()),
    "latin-1 byte on stdin": (AGENTMAIL_SEND + ["--body-json", "-"], b'{"note": "' + LATIN1 + b'"}'),
    "latin-1 byte in an agent name": (["inbox", LATIN1], None),
    "latin-1 byte in a message id": (["read", "w1", LATIN1], None),
}
SWARM_CASES = {
    "latin-1 byte in a title": (["task", "add", LATIN1], None),
    "latin-1 byte in a description": (["task", "add", "ok", "--description", LATIN1], None),
    "latin-1 byte in a tag": (["task", "add", "ok", "--tag", LATIN1], None),
    "latin-1 byte in a feed summary": (["feed", "publish", "--agent", "op", "--type", "custom", LATIN1], None),
    "latin-1 byte in a task id": (["task", "show", LATIN1], None),
}


def run_bytes(program: str, argv: list[str | bytes], home: Path, stdin: bytes | None) -> subprocess.CompletedProcess[bytes]:
    exe = os.fsencode(Path(sys.executable).parent / program)
    args = [exe, *(a if isinstance(a, bytes) else os.fsencode(a) for a in argv)]
    return subprocess.run(args, input=stdin, capture_output=True, timeout=60, check=False,
                          env={**os.environ, "SWARM_HOME": str(home)})


def assert_one_line_exit_2(result: subprocess.CompletedProcess[bytes], prefix: bytes) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result
    assert len(lines) == 1 and lines[0].startswith(prefix), result.stderr
    assert b"Traceback" not in result.stderr


@pytest.mark.parametrize("case", list(CASES))
def test_text_that_is_not_utf8_is_refused_in_one_line_by_agentmail(home_dir: Path, case: str) -> None:
    po = PostOffice(home_dir)
    po.register("sup", role="supervisor")
    po.register("w1")
    argv, stdin = CASES[case]
    assert_one_line_exit_2(run_bytes("agentmail", argv, home_dir, stdin), b"agentmail: error: ")
    assert po.mailbox("w1").list() == [], "nothing is delivered"


@pytest.mark.parametrize("case", list(SWARM_CASES))
def test_text_that_is_not_utf8_is_refused_in_one_line_by_swarm(home_dir: Path, case: str) -> None:
    assert run_cli("swarm", "init", "--home", str(home_dir)).returncode == 0
    argv, stdin = SWARM_CASES[case]
    assert_one_line_exit_2(run_bytes("swarm", argv, home_dir, stdin), b"swarm: error: ")

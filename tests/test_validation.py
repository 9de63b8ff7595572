"""Validation checks against real files and real processes."""

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from swarmkit import wait_until

from protocol.task import Check, ValidationSpec
from swarmd.supervisor.shell import OUTPUT_TAIL_BYTES
from swarmd.supervisor.validation import MAX_CONTENT_BYTES, run_checks


def spec(*checks: dict, workdir: str | None = None) -> ValidationSpec:
    return ValidationSpec(checks=[Check(**c) for c in checks], workdir=workdir)


def one(tmp_path: Path, check: dict, env: dict[str, str] | None = None) -> tuple[bool, str]:
    report = run_checks(spec(check), workdir=tmp_path, env=env)
    (outcome,) = report.outcomes
    assert report.passed == outcome.passed
    return outcome.passed, outcome.detail


def alive(pid: int) -> bool:
    """Running, not a zombie (no init may be reaping orphans in a container)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_no_spec_or_no_checks_passes(tmp_path: Path) -> None:
    assert run_checks(None, workdir=tmp_path).passed
    report = run_checks(ValidationSpec(), workdir=tmp_path)
    assert report.passed and report.outcomes == [] and report.summary() == ""


def test_files_exist(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("")
    (tmp_path / "pkg").mkdir()
    absolute = tmp_path / "abs.txt"
    absolute.write_text("")
    assert one(tmp_path, {"kind": "files_exist", "paths": ["a.py", "pkg", str(absolute)]})[0]
    passed, detail = one(tmp_path, {"kind": "files_exist", "paths": ["a.py", "b.py", "pkg/c.py"]})
    assert not passed
    assert detail.endswith(": b.py, pkg/c.py")


def test_content_check(tmp_path: Path) -> None:
    (tmp_path / "api.py").write_text("import os\n\ndef serve(port):\n    pass\n")
    assert one(tmp_path, {"kind": "content_check", "path": "api.py", "pattern": r"def serve\("})[0]
    passed, detail = one(tmp_path, {"kind": "content_check", "path": "api.py", "pattern": "def stop"})
    assert not passed and "does not match 'def stop'" in detail
    passed, detail = one(tmp_path, {"kind": "content_check", "path": "gone.py", "pattern": "x"})
    assert not passed and "gone.py: no such file" in detail
    passed, detail = one(tmp_path, {"kind": "content_check", "path": ".", "pattern": "x"})
    assert not passed and "cannot read" in detail


def test_content_check_bad_regex_fails_without_raising(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("(")
    passed, detail = one(tmp_path, {"kind": "content_check", "path": "a.txt", "pattern": "(unclosed"})
    assert not passed and "not a valid regular expression" in detail and "missing )" in detail


def test_content_check_reads_a_bounded_prefix(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_bytes(b"x" * MAX_CONTENT_BYTES + b"NEEDLE")
    assert not one(tmp_path, {"kind": "content_check", "path": "big.txt", "pattern": "NEEDLE"})[0]
    assert one(tmp_path, {"kind": "content_check", "path": "big.txt", "pattern": "^x+$"})[0]


@pytest.mark.parametrize("kind", ["command", "tests", "lint"])
def test_command_kinds_pass_and_fail(tmp_path: Path, kind: str) -> None:
    passed, detail = one(tmp_path, {"kind": kind, "run": "echo all good"})
    assert passed and detail.startswith("exit code 0: all good")
    passed, detail = one(tmp_path, {"kind": kind, "run": "echo to-out; echo to-err >&2; exit 3"})
    assert not passed
    assert detail.splitlines()[0] == "exit code 3: to-err"
    assert "to-out" in detail and "to-err" in detail


def test_command_runs_in_workdir_with_env(tmp_path: Path) -> None:
    (tmp_path / "marker").write_text("")
    check = {"kind": "command", "run": 'test -f marker && test "$SWARM_TASK" = t1 && test -n "$PATH"'}
    assert one(tmp_path, check, env={"SWARM_TASK": "t1"})[0]
    assert not one(tmp_path, check, env={"SWARM_TASK": "t2"})[0]


def test_spec_workdir_is_relative_to_the_task_workdir(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "here").write_text("")
    report = run_checks(spec({"kind": "files_exist", "paths": ["here"]}, {"kind": "command", "run": "test -f here"},
                             workdir="sub"), workdir=tmp_path)
    assert report.passed


def test_output_tail_is_bounded(tmp_path: Path) -> None:
    passed, detail = one(tmp_path, {"kind": "command", "run": "seq 1 20000; exit 1"})
    assert not passed
    assert detail.splitlines()[0] == "exit code 1: 20000"
    assert detail.endswith("19999\n20000")
    assert "\n1\n" not in detail and len(detail) < OUTPUT_TAIL_BYTES + 100


def test_command_without_output(tmp_path: Path) -> None:
    assert one(tmp_path, {"kind": "command", "run": "false"}) == (False, "exit code 1; no output")


def test_missing_run_fails_clearly(tmp_path: Path) -> None:
    passed, detail = one(tmp_path, {"kind": "tests"})
    assert not passed and detail == "a tests check needs 'run' (the shell command to run)"


def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    check = {"kind": "command", "run": f"sleep 1000 & echo $! > {pidfile}; echo started; wait", "timeout": 0.5}
    start = time.monotonic()
    passed, detail = one(tmp_path, check)
    assert time.monotonic() - start < 5
    assert not passed and detail.startswith("timed out after 0.5s (killed): started")
    grandchild = int(pidfile.read_text())
    assert wait_until(lambda: not alive(grandchild)), f"grandchild {grandchild} survived"


def test_background_leftovers_neither_delay_nor_survive_a_passing_check(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    start = time.monotonic()
    passed, _ = one(tmp_path, {"kind": "command", "run": f"sleep 1000 & echo $! > {pidfile}", "timeout": 30})
    assert passed and time.monotonic() - start < 5
    grandchild = int(pidfile.read_text())
    assert wait_until(lambda: not alive(grandchild)), f"grandchild {grandchild} survived"


def test_missing_workdir_skips_commands_but_reports_every_check(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    existing = tmp_path / "there.txt"
    existing.write_text("")
    report = run_checks(spec({"kind": "tests", "run": "true"}, {"kind": "files_exist", "paths": [str(existing)]},
                             {"kind": "lint", "run": "true"}), workdir=missing)
    assert not report.passed
    assert [o.passed for o in report.outcomes] == [False, True, False]
    assert report.outcomes[0].detail == f"skipped: workdir {missing} does not exist"


def test_checks_run_in_order_and_continue_after_failures(tmp_path: Path) -> None:
    log = tmp_path / "log"
    report = run_checks(spec({"kind": "command", "run": f"echo 1 >> {log}; exit 1"},
                             {"kind": "files_exist", "paths": ["nothing"]},
                             {"kind": "command", "run": f"echo 2 >> {log}"}), workdir=tmp_path)
    assert [o.passed for o in report.outcomes] == [False, False, True]
    assert log.read_text() == "1\n2\n"
    lines = report.summary().splitlines()
    assert len(lines) == 3
    assert lines[0] == f"FAIL command `echo 1 >> {log}; exit 1`: exit code 1; no output"
    assert lines[1].startswith("FAIL files_exist nothing: missing in ")
    assert lines[2].startswith("PASS command")


def test_summary_is_one_line_per_check(tmp_path: Path) -> None:
    report = run_checks(spec({"kind": "command", "run": "printf 'a\\nb\\n'; exit 2"}), workdir=tmp_path)
    assert report.summary() == "FAIL command `printf 'a\\nb\\n'; exit 2`: exit code 2: b"


def test_concurrent_runs_keep_their_own_output(tmp_path: Path) -> None:
    def run(n: int) -> str:
        report = run_checks(spec({"kind": "command", "run": 'echo "run-$N"; exit 1'}), workdir=tmp_path,
                            env={"N": str(n)})
        return report.outcomes[0].detail

    with ThreadPoolExecutor(max_workers=8) as pool:
        details = list(pool.map(run, range(16)))
    assert details == [f"exit code 1: run-{n}\nrun-{n}" for n in range(16)]

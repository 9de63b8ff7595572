"""Verify a worker's DONE claim: run a task's validation checks and report each one.

`run_checks` is called from a worker thread, off the supervisor's loop: it keeps no shared state and never
raises for a failing check. A failure is an outcome with a reason the next attempt can act on.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

from protocol.task import Check, ValidationSpec
from protocol.text import read_text
from swarmd.supervisor.shell import run_shell

MAX_CONTENT_BYTES = 4 * 1024 * 1024
COMMAND_KINDS = frozenset({"command", "tests", "lint"})
_SUMMARY_WIDTH = 240


@dataclass(frozen=True)
class CheckOutcome:
    """One check's result. `detail` says why it failed, or for commands the exit code and output tail."""

    check: Check
    passed: bool
    detail: str


@dataclass(frozen=True)
class ValidationReport:
    passed: bool
    outcomes: list[CheckOutcome]

    def summary(self) -> str:
        """One line per check (PASS/FAIL, what was checked, the first line of its detail), for a retry prompt."""
        return "\n".join(_summary_line(outcome) for outcome in self.outcomes)


def check_problem(check: Check) -> str | None:
    """What keeps `check` from being run at all (a missing field, a bad regex), or None if it is runnable.

    The plan loader refuses such a check up front; the runner reports it as a failed check.
    """
    if check.kind == "files_exist" and not check.paths:
        return "a files_exist check needs 'paths'"
    if check.kind == "content_check":
        if not check.path or check.pattern is None:
            return "a content_check needs 'path' and 'pattern'"
        try:
            re.compile(check.pattern)
        except re.error as exc:
            return f"pattern {check.pattern!r} is not a valid regular expression: {exc}"
    if check.kind in COMMAND_KINDS and not (check.run or "").strip():
        return f"a {check.kind} check needs 'run' (the shell command to run)"
    return None


def run_checks(spec: ValidationSpec | None, *, workdir: Path, env: dict[str, str] | None = None) -> ValidationReport:
    """Run every check of `spec` in order, continuing after failures so the report lists them all.

    Paths and commands are relative to `workdir`, or to `spec.workdir` resolved against it when set.
    `env` is added to this process's environment for command checks. No spec or no checks: passed.
    """
    if spec is None or not spec.checks:
        return ValidationReport(passed=True, outcomes=[])
    base = workdir / spec.workdir if spec.workdir else workdir
    command_env = {**os.environ, **(env or {})}
    outcomes = [_run_one(check, base, command_env) for check in spec.checks]
    return ValidationReport(passed=all(o.passed for o in outcomes), outcomes=outcomes)


def _run_one(check: Check, workdir: Path, env: dict[str, str]) -> CheckOutcome:
    problem = check_problem(check)
    if problem:
        return CheckOutcome(check, False, problem)
    if check.kind == "files_exist":
        return _files_exist(check, workdir)
    if check.kind == "content_check":
        return _content_check(check, workdir)
    return _command(check, workdir, env)


def _files_exist(check: Check, workdir: Path) -> CheckOutcome:
    missing = [p for p in check.paths if not (workdir / p).exists()]
    if missing:
        return CheckOutcome(check, False, f"missing in {workdir}: {', '.join(missing)}")
    return CheckOutcome(check, True, f"{len(check.paths)} file(s) present")


def _content_check(check: Check, workdir: Path) -> CheckOutcome:
    assert check.path is not None and check.pattern is not None  # check_problem made sure
    target = workdir / check.path
    try:
        text = read_text(target, limit=MAX_CONTENT_BYTES, errors="replace")
    except FileNotFoundError:
        return CheckOutcome(check, False, f"{check.path}: no such file in {workdir}")
    except OSError as exc:
        return CheckOutcome(check, False, f"{check.path}: cannot read: {exc.strerror or exc}")
    if re.search(check.pattern, text):
        return CheckOutcome(check, True, f"{check.path} matches {check.pattern!r}")
    return CheckOutcome(check, False, f"{check.path} does not match {check.pattern!r}")


def _command(check: Check, workdir: Path, env: dict[str, str]) -> CheckOutcome:
    """Run `check.run` in its own process group (`supervisor.shell`); the group is killed when the check ends."""
    if not workdir.is_dir():
        return CheckOutcome(check, False, f"skipped: workdir {workdir} does not exist")
    try:
        result = run_shell(check.run or "", cwd=workdir, env=env, timeout=check.timeout)
    except OSError as exc:
        return CheckOutcome(check, False, f"cannot start: {exc.strerror or exc}")
    if result.timed_out:
        return CheckOutcome(check, False, _with_tail(f"timed out after {check.timeout:g}s (killed)", result.tail))
    return CheckOutcome(check, result.returncode == 0, _with_tail(f"exit code {result.returncode}", result.tail))


def _with_tail(status: str, tail: str) -> str:
    """`status: <last output line>` on the first line (what the summary shows), the output tail below it."""
    lines = [line for line in tail.splitlines() if line.strip()]
    if not lines:
        return f"{status}; no output"
    return f"{status}: {lines[-1].strip()}\n{tail.rstrip()}"


def _summary_line(outcome: CheckOutcome) -> str:
    check = outcome.check
    if check.kind == "files_exist":
        what = f"files_exist {', '.join(check.paths)}"
    elif check.kind == "content_check":
        what = f"content_check {check.path} ~ {check.pattern!r}"
    else:
        what = f"{check.kind} `{check.run}`"
    first = outcome.detail.splitlines()[0] if outcome.detail else ""
    line = f"{'PASS' if outcome.passed else 'FAIL'} {what}: {first}"
    return line if len(line) <= _SUMMARY_WIDTH else line[: _SUMMARY_WIDTH - 3] + "..."

"""The prompt file a worker is started with: its task, its attempt, what went wrong before, how to report.

The task's text goes into this file and never onto a command line. The models are imported only to render
a prompt: a worker's start-up path writes its script with `write_prompt` alone.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from protocol.messages import HelpRequest
    from protocol.task import Task

REPORTING = """\
## How to report
You are agent `{agent}` in a swarmd swarm (home: `{home}`). Report through Agent Mail to `supervisor`
(the commands name the home, so they work from any directory):

    agentmail send --home {home} --from {agent} --to supervisor --type ACCEPTED --task {task}
    agentmail send --home {home} --from {agent} --to supervisor --type PROGRESS --task {task} --field step="..." --field context_pct=40
    agentmail send --home {home} --from {agent} --to supervisor --type DONE --task {task} --field summary="..." --field files='["a.py"]'
    agentmail send --home {home} --from {agent} --to supervisor --type FAILED --task {task} --field failure=TESTS_FAIL --field reason="..."
    agentmail send --home {home} --from {agent} --to supervisor --type HELP_REQUEST --task {task} --field problem="..." --field question="..."
    agentmail send --home {home} --from {agent} --to supervisor --type CHECKPOINT --task {task} --field done="..." --field remaining="..."

Read steering and answers with `agentmail read --home {home} {agent}`. A DONE is checked before it counts:
{checks}

If you have the swarm's MCP tools (the `swarm` server), you may use them instead of `agentmail`; they act as
you: `mail_send` (type DONE, to ["supervisor"], task "{task}", body {{"summary": "..."}}), `mail_read`,
`board_add_note` (id "{task}", kind finding|blocker|question|update), `feed_publish`, `reserve_paths`.
"""


def describe_checks(task: Task) -> str:
    checks = task.validation.checks if task.validation else []
    if not checks:
        return "- (no automatic checks: the supervisor accepts DONE as it is)"
    lines = []
    for check in checks:
        if check.kind == "files_exist":
            lines.append(f"- these files exist: {', '.join(check.paths)}")
        elif check.kind == "content_check":
            lines.append(f"- {check.path} matches the regular expression `{check.pattern}`")
        else:
            lines.append(f"- {check.kind}: `{check.run}` exits 0 within {check.timeout:g} s")
    return "\n".join(lines)


def previous_attempts(task: Task) -> str:
    """What happened before, for the next attempt: failures with their reasons, and the last checkpoint."""
    from protocol.task import AttemptOutcome

    parts = []
    for attempt in task.attempts:
        if attempt.outcome == AttemptOutcome.FAILED:
            parts.append(f"### Attempt {attempt.number} failed\n{attempt.reason.strip()}")
        elif attempt.outcome == AttemptOutcome.CHECKPOINT:
            parts.append(f"### Attempt {attempt.number} checkpointed\n{attempt.reason.strip()}")
    return "\n\n".join(parts)


def render_prompt(task: Task, *, agent: str, attempt: int, max_attempts: int, home: Path, git_note: str = "") -> str:
    """The prompt of attempt `attempt` (the ledger's number) at `task`. It is numbered for the worker within the
    task's budget: failures before the last `swarm retry`, hand-overs and abandoned attempts do not count."""
    history = previous_attempts(task)
    within = min(task.failed_attempts() + 1, max_attempts)
    note = f" (start #{attempt} of this task: the others were retried, handed over or abandoned)" if attempt > within \
        else ""
    sections = [
        f"# Task {task.id}: {task.title}",
        f"Attempt {within} of {max_attempts}.{note}",
        task.description.strip() or "(no description)",
    ]
    if history:
        sections.append("## Earlier attempts (fix what went wrong; continue from a checkpoint)\n" + history)
    if git_note:
        sections.append(git_note)
    sections.append(REPORTING.format(agent=agent, home=shlex.quote(str(home)), task=task.id,
                                     checks=describe_checks(task)))
    return "\n\n".join(sections)


def render_help_prompt(task: Task, request: HelpRequest, *, helper: str, asker: str) -> str:
    """The prompt of a helper started for a worker's HELP_REQUEST."""
    return (f"# Help {asker} with task {task.id}: {task.title}\n\n{task.description}\n\n"
            f"## Their problem ({request.kind})\n{request.problem}\n\n## What they tried\n{request.tried}\n\n"
            f"## Their question\n{request.question}\n\nAnswer with:\n    agentmail send --from {helper} --to "
            f"{asker} --type HELP_RESPONSE --task {task.id} --field answer=\"...\"\n")


def write_prompt(path: Path, text: str) -> None:
    """Write the prompt privately (0600), replacing any earlier file of the same name."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)

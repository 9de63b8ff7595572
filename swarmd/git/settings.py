"""How a swarm uses git: swarm.toml's `[git]` table, and a plan's `[git]` table that overrides it for the
plan's tasks (carried on each task as `metadata["git"]`, so the ledger alone says how a task is isolated)."""

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from protocol.task import Check

PLAN_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
INTEGRATION_SUFFIX = "_integration"  # `swarm/<plan>` cannot be a branch beside `swarm/<plan>/<task>` in git


class GitPlan(BaseModel):
    """`[git]` in a plan file: what its tasks' isolation and integration are (each unset key: swarm.toml's)."""

    model_config = ConfigDict(extra="forbid")

    isolation: Literal["auto", "worktree", "none"] | None = Field(default=None, description=(
        "`worktree`: each attempt works in its own git worktree and branch `swarm/<plan>/<task>`; `none`: "
        "the task's directory is shared, as it is; `auto`: worktree when the task's directory is in a git "
        "repository."))
    integration: str | None = Field(default=None, description=(
        "The branch validated work lands on, through the merge queue (default `swarm/<plan>/_integration`, "
        "made from the repository's HEAD when first needed). Your own branches are never moved: "
        "`swarm land` fast-forwards one when asked."))
    checks: list[Check] | None = Field(default=None, description=(
        "The integration gate: checks run (with each task's own) on the merged result, in a scratch worktree, "
        "before the integration branch moves."))
    include: list[str] | None = Field(default=None, description=(
        "Untracked files (globs, relative to the repository) copied into each new worktree, such as `.env`; "
        "a `.worktreeinclude` file at the repository's top adds to them."))
    setup: str | None = Field(default=None, description=(
        "A shell command run in each new worktree before its worker starts (install dependencies, say)."))
    teardown: str | None = Field(default=None, description=(
        "A shell command run in a worktree before `swarm clean` removes it."))
    strategy: Literal["merge", "rebase"] | None = Field(default=None, description=(
        "How the queue puts a task's branch onto the integration tip: a merge commit, or its commits rebased "
        "(then fast-forwarded)."))


class GitSettings(GitPlan):
    """`[git]` in swarm.toml: the defaults of every plan."""

    isolation: Literal["auto", "worktree", "none"] = Field(default="auto", description=GitPlan.model_fields[
        "isolation"].description)
    strategy: Literal["merge", "rebase"] = Field(default="merge", description=GitPlan.model_fields[
        "strategy"].description)

    reservations: Literal["warn", "refuse"] = Field(default="warn", description=(
        "What a worktree's pre-commit hook does with a commit that touches another worker's exclusive file "
        "reservation: print a warning, or refuse the commit."))

    def effective(self, task_metadata: dict[str, Any]) -> "GitSettings":
        """These settings with the task's plan-level ones (`metadata["git"]`) over them."""
        raw = task_metadata.get("git")
        if not isinstance(raw, dict):
            return self
        plan = GitPlan.model_validate({k: v for k, v in raw.items() if k in GitPlan.model_fields})
        return self.model_copy(update=plan.model_dump(exclude_none=True))

    @property
    def gate(self) -> list[Check]:
        """The integration checks (none: only each task's own checks gate its merge)."""
        return self.checks or []


def plan_of(task_metadata: dict[str, Any], default: str) -> str:
    """The plan a task belongs to (its name names its branches): the plan's, else `default`."""
    raw = task_metadata.get("git")
    name = raw.get("plan") if isinstance(raw, dict) else None
    return name if isinstance(name, str) and PLAN_NAME_RE.fullmatch(name) else default


def plan_name(stem: str) -> str:
    """A plan name from a file's stem: lower case, other characters as `-` (`My Plan.toml` -> `my-plan`)."""
    name = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._")[:64]
    return name or "plan"

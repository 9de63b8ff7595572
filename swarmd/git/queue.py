"""The merge queue: validated attempts land on the integration branch one at a time, each merged (or rebased)
onto the current tip in a scratch worktree, and gated there (the task's own checks and the plan's
integration checks run on the merged result) before the branch moves. The move is `git update-ref` with the
old tip as a compare-and-swap, so the integration branch only ever points at gated work: a supervisor
killed at any moment leaves it at the old tip or the new one, never between. The idea is the "not rocket
science" rule of Bors and GitHub's merge queue; here the batch is one attempt.

`merge_entry` does the git work and returns what happened; the supervisor records it in the ledger.
"""

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from protocol.task import Check, ValidationSpec
from swarmd.git.repo import Git, GitError, Identity
from swarmd.git.worktrees import copy_included
from swarmd.supervisor.validation import ValidationReport, run_checks

MERGER = Identity(name="swarm merge queue", email="merge-queue@swarm.invalid")


@dataclass(frozen=True)
class QueueEntry:
    """A validated attempt waiting to land: its branch's commit at the time it was queued."""

    task: str
    attempt: int
    worker: str
    plan: str
    repo: str
    branch: str
    commit: str
    integration: str
    subdir: str = ""
    seq: int = 0  # the ledger event that queued it: the queue's order among equals

    def detail(self) -> dict[str, Any]:
        """The entry as a `merge_queued` event's detail."""
        return {k: v for k, v in asdict(self).items() if k != "seq"}

    @classmethod
    def from_detail(cls, detail: dict[str, Any], seq: int = 0) -> "QueueEntry | None":
        """The entry a `merge_queued` event recorded (with `task` added), or None if the detail is not one."""
        try:
            return cls(**{k: detail[k] for k in cls.__dataclass_fields__ if k != "seq"}, seq=seq)
        except (KeyError, TypeError):
            return None


@dataclass(frozen=True)
class MergeOutcome:
    """What one turn of the queue did. `landed`: the integration branch moved from `old` to `new` (or
    already held the commit). Else `conflict` or `gate` says why the attempt failed, or `lost_race` says the
    branch moved meanwhile and the entry is simply tried again."""

    entry: QueueEntry
    landed: bool
    old: str = ""
    new: str = ""
    conflict: str = ""
    gate: str = ""
    lost_race: bool = False
    error: str = ""

    @property
    def reason(self) -> str:
        """The failure as the next attempt's prompt shows it."""
        if self.conflict:
            return (f"merge conflict: your branch {self.entry.branch} does not merge cleanly onto "
                    f"{self.entry.integration} (now at {self.old[:12]}); the next attempt starts from that tip, "
                    f"so redo the change on top of the work merged meanwhile.\n{self.conflict}")
        if self.gate:
            return (f"the integration gate failed on your change merged onto {self.entry.integration} "
                    f"(at {self.old[:12]}):\n{self.gate}")
        return f"the merge could not be made: {self.error}"


def merge_entry(entry: QueueEntry, *, scratch: Path, task_checks: ValidationSpec | None, gate: list[Check],
                strategy: str = "merge", include: list[str] | None = None,
                env: dict[str, str] | None = None) -> MergeOutcome:
    """Land `entry` on its integration branch if it merges cleanly and its gate passes (see the module).

    `scratch` is a worktree path of the queue's own (made or repaired here); the untracked files `include`
    names (and `.worktreeinclude`) are carried into it, as into every attempt's worktree. Raises nothing for a conflict or
    a red gate (they are outcomes); GitError only when git cannot work at all.
    """
    git = Git(Path(entry.repo))
    ref = f"refs/heads/{entry.integration}"
    old = git.commit_of(ref)
    if old is None:
        return MergeOutcome(entry, False, error=f"the integration branch {entry.integration} is gone")
    if git.is_ancestor(entry.commit, old):
        return MergeOutcome(entry, True, old=old, new=old)  # landed before (a restart) or changed nothing
    work = _scratch_at(git, scratch, old)
    copy_included(git.path, work.path, include or [])
    new_or_conflict = _combine(work, entry, old, strategy)
    if isinstance(new_or_conflict, MergeOutcome):
        return new_or_conflict
    new = new_or_conflict
    report = _gate(work.path / entry.subdir, task_checks, gate, env)
    if not report.passed:
        return MergeOutcome(entry, False, old=old, gate=report.summary())
    try:
        git.update_ref(ref, new, old, f"swarm: land {entry.task} attempt {entry.attempt}")
    except GitError:
        return MergeOutcome(entry, False, old=old, lost_race=True)
    return MergeOutcome(entry, True, old=old, new=new)


def _combine(work: Git, entry: QueueEntry, old: str, strategy: str) -> "str | MergeOutcome":
    """The merged (or rebased) commit in the scratch worktree, or the conflict as an outcome."""
    message = (f"Merge {entry.branch} ({entry.task}, attempt {entry.attempt})\n\nSwarm-Task: {entry.task}\n"
               f"Swarm-Attempt: {entry.attempt}\nSwarm-Worker: {entry.worker}\n")
    try:
        if strategy == "rebase":
            work.run("checkout", "-q", "--detach", "-f", entry.commit)
            work.run("rebase", "-q", old, env=MERGER.env())
        else:
            work.run("merge", "-q", "--no-ff", "--no-edit", "-m", message, entry.commit, env=MERGER.env())
    except GitError as exc:
        files = work.run("diff", "--name-only", "--diff-filter=U") if work.ok("rev-parse", "-q", "--verify",
                                                                              "HEAD") else ""
        work.ok("rebase", "--abort") if strategy == "rebase" else work.ok("merge", "--abort")
        listed = f"conflicting files: {', '.join(files.split())}\n" if files.strip() else ""
        return MergeOutcome(entry, False, old=old, conflict=f"{listed}{exc.output[-2000:]}")
    return work.run("rev-parse", "HEAD")


def _gate(workdir: Path, task_checks: ValidationSpec | None, gate: list[Check],
          env: dict[str, str] | None) -> ValidationReport:
    own = run_checks(task_checks, workdir=workdir, env=env)
    plan = run_checks(ValidationSpec(checks=gate), workdir=workdir, env=env)
    return ValidationReport(passed=own.passed and plan.passed, outcomes=own.outcomes + plan.outcomes)


def _scratch_at(git: Git, scratch: Path, commit: str) -> Git:
    """The queue's scratch worktree, clean and detached at `commit`: reused when it is sound (cheap), else
    made again (a supervisor killed mid-merge may leave a merge in progress or a stale index lock)."""
    work = Git(scratch)
    if (scratch / ".git").is_file():
        try:
            _abort_unfinished(work)
            work.run("checkout", "-q", "--detach", "-f", commit)
            work.run("clean", "-q", "-ffdx")
            return work
        except GitError:
            pass
    if scratch.exists():
        shutil.rmtree(scratch, ignore_errors=True)
    git.ok("worktree", "prune")
    scratch.parent.mkdir(parents=True, exist_ok=True)
    git.run("worktree", "add", "-q", "--detach", "-f", str(scratch), commit)
    return work


def _abort_unfinished(work: Git) -> None:
    """Abort a merge or rebase that a killed supervisor left in the scratch worktree (only if there is one:
    each git call costs a process)."""
    text = (work.path / ".git").read_text().strip()
    gitdir = Path(text.removeprefix("gitdir:").strip()) if text.startswith("gitdir:") else work.path / ".git"
    if (gitdir / "MERGE_HEAD").exists():
        work.ok("merge", "--abort")
    if (gitdir / "rebase-merge").exists() or (gitdir / "rebase-apply").exists():
        work.ok("rebase", "--abort")


def scratch_dir(home_root: Path, plan: str) -> Path:
    """The queue's scratch worktree for one plan: `<home>/git/merge/<plan>`."""
    return home_root / "git" / "merge" / plan


def order(entries: list[QueueEntry], waves: dict[str, int]) -> list[QueueEntry]:
    """Dependency order: by the task's wave (a blocker before what waits on it), then by when it was queued."""
    return sorted(entries, key=lambda e: (waves.get(e.task, 0), e.seq))

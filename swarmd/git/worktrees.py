"""A git worktree per attempt: each attempt at a task works on its own branch `swarm/<plan>/<task>` (an
attempt suffix from the second on), checked out in `<home>/worktrees/`, made from the integration branch's
tip so the task sees its blockers' merged work. The user's branch and working tree are never touched: only
new refs are made (by compare-and-swap) and worktrees are added beside the user's.

The idea of one worktree per agent is the common one of claude-squad and ntm `--worktrees`. Untracked files
a task needs (`.env`) are carried into a new worktree by `[git] include` globs and a `.worktreeinclude` file.
"""

import glob
import os
import shutil
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from swarmd.git.repo import ZERO, Git, GitError, Identity, valid_branch
from swarmd.git.settings import INTEGRATION_SUFFIX, GitSettings
from swarmd.home import SwarmHome
from swarmd.supervisor.shell import run_shell

SETUP_TIMEOUT = 600.0
INCLUDE_FILE = ".worktreeinclude"


@dataclass(frozen=True)
class AttemptTree:
    """Where one attempt works: its branch, its worktree, the commit it started from, and the task's directory
    inside the repository (`subdir`, "" for the top) so `workdir` is the task's directory in the worktree."""

    task: str
    attempt: int
    plan: str
    repo: str  # the main worktree's top
    branch: str
    path: str
    base: str
    integration: str
    subdir: str = ""

    @property
    def workdir(self) -> Path:
        """The task's directory inside this worktree."""
        return Path(self.path) / self.subdir

    def detail(self) -> dict[str, Any]:
        """The attempt as a `worktree_created` event's detail."""
        return asdict(self)

    @classmethod
    def from_detail(cls, detail: dict[str, Any]) -> "AttemptTree | None":
        """The attempt a `worktree_created` event recorded (with `task` added), or None if it is not one."""
        try:
            return cls(**{k: detail[k] for k in cls.__dataclass_fields__})
        except (KeyError, TypeError):
            return None


def repository_of(workdir: Path) -> Path | None:
    """The top of the git working tree holding `workdir`, or None (not in a repository, or git is missing)."""
    return Git(workdir).toplevel() if workdir.is_dir() else None


def discovery_marks(workdir: Path) -> tuple[bool, tuple[tuple[Path, int], ...]]:
    """What git's discovery of the repository holding `workdir` depends on in the file system: whether
    `workdir` is a directory, and which directories from it up to `/` hold a `.git` (directory or file; with
    its inode, so that one removed and made again differs). While these stay the same, so does
    `repository_of(workdir)` (git's environment and config aside)."""
    marks = []
    for directory in (workdir, *workdir.parents):
        try:
            marks.append((directory, os.lstat(directory / ".git").st_ino))
        except OSError:
            continue
    return workdir.is_dir(), tuple(marks)


def has_commits(top: Path) -> bool:
    """Whether the repository's HEAD names a commit (a new repository has none to branch from)."""
    return Git(top).commit_of("HEAD") is not None


def integration_branch(settings: GitSettings, plan: str) -> str:
    """The branch the plan's validated work lands on."""
    return settings.integration or f"swarm/{plan}/{INTEGRATION_SUFFIX}"


def ensure_integration(git: Git, branch: str) -> str:
    """The integration branch's tip, making the branch at the repository's HEAD when it does not exist."""
    tip = git.commit_of(f"refs/heads/{branch}")
    if tip is not None:
        return tip
    head = git.commit_of("HEAD")
    if head is None:
        raise GitError(["rev-parse", "HEAD"], 1, f"{git.path} has no commit yet: commit something first")
    try:
        git.update_ref(f"refs/heads/{branch}", head, ZERO, "swarm: integration branch")
    except GitError:
        pass  # made meanwhile: read it again
    tip = git.commit_of(f"refs/heads/{branch}")
    assert tip is not None
    return tip


def attempt_branch(git: Git, plan: str, task: str, attempt: int) -> str:
    """`swarm/<plan>/<task>` (`-a<N>` from the second attempt on), with `-r<k>` added while a branch of that
    name exists: an old branch may hold unmerged work, so it is never reused or reset."""
    name = f"swarm/{plan}/{task}" + (f"-a{attempt}" if attempt > 1 else "")
    if not valid_branch(name):
        name = f"swarm/{plan}/task-{zlib.crc32(task.encode()):08x}-a{attempt}"
    chosen, k = name, 1
    while git.commit_of(f"refs/heads/{chosen}") is not None:
        k += 1
        chosen = f"{name}-r{k}"
    return chosen


def create_attempt(home: SwarmHome, top: Path, task_workdir: Path, *, plan: str, task: str, attempt: int,
                   settings: GitSettings, start: str | None = None) -> AttemptTree:
    """Make the attempt's branch and worktree from the integration tip (or `start`, a checkpointed attempt's
    tip), carry in the included files and run the setup command. Raises GitError (git failed, the repository
    has no commit) or SetupError."""
    git = Git(top)
    integration = integration_branch(settings, plan)
    tip = start or ensure_integration(git, integration)
    if start:
        ensure_integration(git, integration)
    branch = attempt_branch(git, plan, task, attempt)
    path = _free_dir(home.root / "worktrees" / plan / f"{task}-a{attempt}")
    path.parent.mkdir(parents=True, exist_ok=True)
    git.run("worktree", "add", "--quiet", "-b", branch, str(path), tip)
    subdir = os.path.relpath(task_workdir.resolve(), top.resolve())
    tree = AttemptTree(task=task, attempt=attempt, plan=plan, repo=str(top), branch=branch, path=str(path),
                       base=tip, integration=integration, subdir="" if subdir == "." else subdir)
    copy_included(top, path, settings.include or [])
    tree.workdir.mkdir(parents=True, exist_ok=True)
    if settings.setup:
        result = run_shell(settings.setup, cwd=tree.workdir, env={**os.environ, "SWARM_TASK": task},
                           timeout=SETUP_TIMEOUT)
        if result.returncode != 0 or result.timed_out:
            raise SetupError(f"the worktree setup command failed in {tree.workdir}: "
                             f"{'timed out' if result.timed_out else f'exit code {result.returncode}'}: "
                             f"{result.tail.strip()[-400:]}")
    return tree


class SetupError(GitError):
    """The setup command of a new worktree failed."""

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)
        self.args_run, self.returncode, self.output = [], 1, message


def copy_included(top: Path, dest: Path, patterns: list[str]) -> list[str]:
    """Copy the untracked files named by `patterns` and by `<top>/.worktreeinclude` (one glob a line, `#`
    comments) from the main worktree into `dest`; paths that leave the repository are skipped."""
    lines = list(patterns)
    try:
        lines += (top / INCLUDE_FILE).read_text().splitlines()
    except OSError:
        pass
    copied = []
    root = top.resolve()
    for pattern in (p.strip() for p in lines):
        if not pattern or pattern.startswith("#") or pattern.startswith("/") or ".." in Path(pattern).parts:
            continue
        for found in glob.glob(pattern, root_dir=root, recursive=True, include_hidden=True):
            source = (root / found).resolve()
            if root not in source.parents or not source.is_file() or (dest / found).exists():
                continue
            (dest / found).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / found)
            copied.append(found)
    return copied


def commit_leftovers(tree: AttemptTree, worker: str, swarm: str, note: str = "") -> str | None:
    """Commit what the attempt left uncommitted on its branch, by the worker; the new commit or None."""
    path = Path(tree.path)
    if not path.is_dir():
        return None
    git = Git(path)
    message = f"[{tree.task}] attempt {tree.attempt}{note}: changes left uncommitted\n\nSwarm-Task: {tree.task}\n" \
              f"Swarm-Attempt: {tree.attempt}\nSwarm-Worker: {worker}\n"
    return git.commit_all(message, worker_identity(worker, swarm))


def git_note(tree: AttemptTree) -> str:
    """The section of a worker's prompt about its worktree and branch."""
    return (f"## Git\nYou work in your own git worktree `{tree.path}` on branch `{tree.branch}`, made from "
            f"`{tree.integration}` at {tree.base[:12]}. Commit your work on this branch (what you leave "
            f"uncommitted is committed for you when you report). Do not switch branches; other workers' "
            f"changes reach you through `{tree.integration}` once they are merged.")


def worker_identity(worker: str, swarm: str) -> Identity:
    """Who a worker's commits are by: `<swarm> <worker>` at a `.invalid` address (it is no mailbox)."""
    return Identity(name=f"{swarm} {worker}", email=f"{worker}@{swarm}.swarm.invalid")


def remove_worktree(tree: AttemptTree, settings: GitSettings) -> None:
    """Run the teardown command, then remove the worktree (its branch stays: branches are removed apart)."""
    if not Path(tree.path).is_dir():
        Git(Path(tree.repo)).ok("worktree", "prune")
        return
    if settings.teardown:
        run_shell(settings.teardown, cwd=tree.workdir if tree.workdir.is_dir() else Path(tree.path),
                  env=dict(os.environ), timeout=SETUP_TIMEOUT)
    Git(Path(tree.repo)).run("worktree", "remove", "--force", tree.path)


def _free_dir(path: Path) -> Path:
    chosen, k = path, 1
    while chosen.exists():
        k += 1
        chosen = path.with_name(f"{path.name}-r{k}")
    return chosen

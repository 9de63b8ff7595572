"""Benchmark the merge queue against a bare loop of `git merge` over the same branches.

Prints one JSON object. A throw-away repository under /tmp gets N branches (default 50), each adding one
file from the same base, as N one-file tasks would. Then, on two fresh integration branches:

1. baseline: one worktree checked out on its integration branch, `git merge --no-ff --no-edit` of each
   branch in turn (what a person would type);
2. queue: `swarmd.git.queue.merge_entry` for each branch in turn, as the supervisor's queue runs it: the
   scratch worktree reset to the tip, the merge, the gate (the task's own check, a `files_exist`), and the
   compare-and-swap `update-ref` of the integration branch.

All N are queued at once, so a task's time in the queue is the time until its own merge landed. Reported:
merges per minute for both, the ratio (queue / baseline), and the time in the queue (mean, p50, max).
Git reads no user or system config (GIT_CONFIG_GLOBAL=/dev/null, GIT_CONFIG_NOSYSTEM=1).

    python scripts/bench_merge.py [--tasks 50]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from protocol.task import Check, ValidationSpec
from swarmd.git.queue import QueueEntry, merge_entry

ENV = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "bench",
       "GIT_AUTHOR_EMAIL": "bench@example.invalid", "GIT_COMMITTER_NAME": "bench",
       "GIT_COMMITTER_EMAIL": "bench@example.invalid"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def make_branches(repo: Path, count: int) -> list[tuple[str, str]]:
    """The repository with `count` branches `task/<i>`, each adding `f<i>.txt`: (branch, commit) pairs."""
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README").write_text("bench\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    branches = []
    for i in range(count):
        git(repo, "checkout", "-q", "-b", f"task/{i}", "main")
        (repo / f"f{i}.txt").write_text(f"{i}\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"task {i}")
        branches.append((f"task/{i}", git(repo, "rev-parse", "HEAD")))
    git(repo, "checkout", "-q", "main")
    return branches


def baseline(repo: Path, branches: list[tuple[str, str]], work: Path) -> list[float]:
    """A bare loop of `git merge`; the seconds since the start at which each merge was made."""
    git(repo, "branch", "bare", "main")
    git(repo, "worktree", "add", "-q", str(work), "bare")
    start, landed = time.perf_counter(), []
    for branch, _ in branches:
        git(work, "merge", "-q", "--no-ff", "--no-edit", branch)
        landed.append(time.perf_counter() - start)
    return landed


def queue(repo: Path, branches: list[tuple[str, str]], scratch: Path) -> list[float]:
    """The merge queue, one entry at a time; the seconds since the start at which each landed."""
    git(repo, "branch", "integration", "main")
    start, landed = time.perf_counter(), []
    for i, (branch, commit) in enumerate(branches):
        entry = QueueEntry(task=f"t{i}", attempt=1, worker=f"w{i}", plan="bench", repo=str(repo), branch=branch,
                           commit=commit, integration="integration", seq=i)
        checks = ValidationSpec(checks=[Check(kind="files_exist", paths=[f"f{i}.txt"])])
        outcome = merge_entry(entry, scratch=scratch, task_checks=checks, gate=[])
        if not outcome.landed:
            raise SystemExit(f"bench: {branch} did not land: {outcome.reason}")
        landed.append(time.perf_counter() - start)
    return landed


def summary(landed: list[float]) -> dict[str, float]:
    return {"seconds": round(landed[-1], 3), "merges_per_min": round(60 * len(landed) / landed[-1], 1),
            "in_queue_mean_s": round(statistics.mean(landed), 3),
            "in_queue_p50_s": round(statistics.median(landed), 3), "in_queue_max_s": round(max(landed), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50)
    args = parser.parse_args()
    os.environ.update(ENV)
    root = Path(tempfile.mkdtemp(prefix="bench-merge-"))
    try:
        repo = root / "repo"
        branches = make_branches(repo, args.tasks)
        bare = summary(baseline(repo, branches, root / "bare"))
        queued = summary(queue(repo, branches, root / "scratch"))
        same = git(repo, "rev-parse", "bare^{tree}") == git(repo, "rev-parse", "integration^{tree}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({"tasks": args.tasks, "baseline_git_merge": bare, "merge_queue": queued,
                      "ratio_merges_per_min": round(queued["merges_per_min"] / bare["merges_per_min"], 3),
                      "same_result": same}, indent=2))


if __name__ == "__main__":
    main()

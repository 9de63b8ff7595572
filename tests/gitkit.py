"""Helpers for tests with real git repositories: a private git config, a repository, snapshots of a tree."""

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

USER = ["-c", "user.name=Test User", "-c", "user.email=user@example.invalid"]


def isolate_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Git reads no user or system config in this test (and its children: the daemon, the workers)."""
    config = tmp_path / "gitconfig"
    config.write_text("[init]\n\tdefaultBranch = main\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "GIT_DIR",
                "GIT_WORK_TREE", "GIT_CONFIG_COUNT"):
        monkeypatch.delenv(var, raising=False)


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(repo), *USER, *args], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def make_repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


def tree_snapshot(repo: Path) -> dict[str, str]:
    """Every file of the working tree (not .git) by its content hash, with the branch checked out and the
    status: what 'byte-for-byte unchanged' compares."""
    files = {}
    for root, dirs, names in os.walk(repo):
        dirs[:] = [d for d in dirs if not (Path(root) == repo and d in (".git", ".swarm"))]
        for name in names:
            path = Path(root) / name
            files[str(path.relative_to(repo))] = hashlib.sha256(path.read_bytes()).hexdigest()
    files["<HEAD>"] = (repo / ".git" / "HEAD").read_text()
    files["<main>"] = git(repo, "rev-parse", "refs/heads/main")
    files["<status>"] = git(repo, "status", "--porcelain", "--untracked-files=all")
    return files


def dangling_commits(repo: Path) -> list[str]:
    out = subprocess.run(["git", "-C", str(repo), "fsck", "--lost-found", "--no-reflogs"], capture_output=True,
                         text=True, check=True).stdout
    return [line.split()[2] for line in out.splitlines() if line.startswith("dangling commit")]


def task_commits(repo: Path) -> set[str]:
    """Every commit a worker made (authored by a swarm worker) anywhere in the object database."""
    out = subprocess.run(["git", "-C", str(repo), "cat-file", "--batch-all-objects", "--batch-check"],
                         capture_output=True, text=True, check=True).stdout
    commits = [line.split()[0] for line in out.splitlines() if line.split()[1] == "commit"]
    authors = git(repo, "log", "--no-walk=unsorted", "--format=%H %ae", *commits).splitlines() if commits else []
    return {sha for sha, author in (line.split() for line in authors)
            if author.endswith(".swarm.invalid") and not author.startswith("merge-queue@")}

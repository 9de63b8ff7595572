"""Retention on a home full of read mail and ended workers' logs, against a bare unlink loop over as many
files in the same run; and what the supervisor's once-a-minute check costs when it is not due.

    python scripts/bench_retention.py [--mail 10000] [--logs 1000]

Prints one JSON object.
"""

import argparse
import json
import os
import shutil
import tempfile
import time
from datetime import timedelta

from agentmail import PostOffice
from protocol.ids import utcnow
from protocol.messages import MessageType, make_message
from swarmd.config import load_config
from swarmd.home import SwarmHome, init_home
from swarmd.ledger.log import Ledger
from swarmd.supervisor.retention import DAY, prune, prune_if_due

NOT_DUE_CALLS = 1000


def old_home(root: str, mail: int, logs: int) -> SwarmHome:
    """A home whose `mail` read messages and `logs` ended workers' logs are all 30 days old."""
    home = SwarmHome.at(os.path.join(root, "home"))
    init_home(home)
    post = PostOffice(home.root, durable=False)
    box = post.register("w1")
    for _ in range(mail):
        post.send(make_message(MessageType.STEER, "operator", "w1", {"text": "x" * 200}))
    while box.claim():
        pass
    old = time.time() - 30 * DAY
    cur = home.mail_dir / "w1" / "cur"
    for name in os.listdir(cur):
        os.utime(cur / name, (old, old))
    for i in range(logs):
        path = home.logs_dir / f"w{i + 2}.log"
        path.write_text("x" * 1000)
        os.utime(path, (old, old))
    return home


def bare_unlinks(root: str, count: int) -> float:
    """Seconds to list and unlink `count` small files in one directory."""
    directory = os.path.join(root, "bare")
    os.mkdir(directory)
    for i in range(count):
        with open(os.path.join(directory, f"{i:012d}.json"), "w") as f:
            f.write("x" * 400)
    start = time.perf_counter()
    for name in os.listdir(directory):
        os.unlink(os.path.join(directory, name))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mail", type=int, default=10000)
    parser.add_argument("--logs", type=int, default=1000)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="bench-retention-")
    try:
        home = old_home(root, args.mail, args.logs)
        config, ledger, now = load_config(home.config_file), Ledger(home), utcnow()
        bare = bare_unlinks(root, args.mail + args.logs)
        start = time.perf_counter()
        report = prune(home, config, set(), now)
        pruned = time.perf_counter() - start
        prune_if_due(home, config, ledger, now)
        start = time.perf_counter()
        for _ in range(NOT_DUE_CALLS):
            prune_if_due(home, config, ledger, now + timedelta(seconds=1))
        not_due = (time.perf_counter() - start) / NOT_DUE_CALLS
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({
        "files": args.mail + args.logs, "removed": len(report.removals), "prune_s": round(pruned, 3),
        "bare_unlink_s": round(bare, 3), "ratio": round(pruned / bare, 2) if bare else None,
        "not_due_check_us": round(not_due * 1e6, 1),
    }))


if __name__ == "__main__":
    main()

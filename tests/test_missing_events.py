"""Watches that get no file events still see every change: writes below an overlay mount raise no event on
the mount, and a user with no inotify instance left gets none at all. Every watch (mailbox waits and
watches, `on_arrival`, `watch_file` for the ledger and pane deaths) rescans on a period, falls back to
polling with one warning, and `swarm run`/`swarm up` go on working."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentmail import Mailbox, PostOffice
from protocol import MessageType, make_message
from swarmd.watch import watch_file
from conftest import REPO

# A uid of its own for the inotify tests: the kernel counts inotify instances per user, and exhausting
# those of a uid that anything else on the machine runs as would starve it too.
INOTIFY_UID = 64321
ARRIVAL = 30.0  # seconds allowed for a change to be seen (a rescan takes RESCAN_PERIOD; load stretches it)


def steer(text: str) -> object:
    return make_message(MessageType.STEER, "sup", "w1", {"text": text})


# -- an overlay: the writer on the lower directory, the reader on the mount -----------------------------------


@pytest.fixture
def overlay(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(lower, merged): an overlayfs mount of `lower`; files written into `lower` raise no event on `merged`."""
    lower, upper, work, merged = (tmp_path / d for d in ("lower", "upper", "work", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    PostOffice(lower / "home", durable=False).register("w1")
    (lower / "home" / "ledger.jsonl").write_text("")
    mount = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                            f"lowerdir={lower},upperdir={upper},workdir={work}", str(merged)],
                           capture_output=True, text=True, check=False)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount an overlay file system here (needs root and overlayfs): {mount.stderr.strip()}")
    try:
        yield lower / "home", merged / "home"
    finally:
        subprocess.run(["umount", "-l", str(merged)], check=False)


class ScanSignal(Mailbox):
    """A real mailbox that also says when a reader has scanned it, so a test can send after the first scan."""

    scanned = threading.Event()

    def scan(self, seen: set[str]) -> list:  # type: ignore[type-arg]
        found = super().scan(seen)
        self.scanned.set()
        return found


def test_mail_written_below_an_overlay_is_seen_by_every_watch(overlay: tuple[Path, Path]) -> None:
    lower, merged = overlay
    writer = PostOffice(lower, durable=False)
    reader = ScanSignal(merged / "mail" / "w1")
    arrived = threading.Event()
    arrivals = reader.on_arrival(arrived.set)
    ledger_written = threading.Event()
    ledger_watch = watch_file(merged / "ledger.jsonl", ledger_written.set)
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(reader.wait(types={MessageType.DONE}, timeout=ARRIVAL)))
    waiter.start()
    watcher = subprocess.Popen([str(Path(sys.executable).parent / "agentmail"), "watch", "w1", "--home", str(merged)],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert reader.scanned.wait(ARRIVAL), "the waiter scanned its mailbox"
        first = writer.send(steer("first"))
        assert json.loads(watcher.stdout.readline())["id"] == first.id  # `watch` has scanned and is waiting
        second = writer.send(steer("second"))
        done = writer.send(make_message(MessageType.DONE, "sup", "w1", {"task": "t-1"}))
        with (lower / "ledger.jsonl").open("a") as f:
            f.write("{}\n")
        assert arrived.wait(ARRIVAL), "on_arrival never called back for mail written below the overlay"
        assert ledger_written.wait(ARRIVAL), "watch_file never saw a write below the overlay"
        assert json.loads(watcher.stdout.readline())["id"] == second.id, "`agentmail watch` missed the mail"
        waiter.join(ARRIVAL)
        assert got and got[0] is not None and got[0].message.id == done.id, "wait() missed the mail"  # type: ignore[attr-defined]
    finally:
        watcher.kill()
        watcher.wait()
        arrivals.stop()
        ledger_watch.stop()
        waiter.join()


# -- no inotify instance left ----------------------------------------------------------------------------------

EXHAUST = """
import ctypes, errno, os, resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
libc = ctypes.CDLL(None, use_errno=True)
held = []
while (fd := libc.inotify_init1(os.O_CLOEXEC)) >= 0:
    held.append(fd)
print(len(held), errno.errorcode.get(ctypes.get_errno(), "?"), flush=True)
sys.stdin.read()  # hold them until the test closes our stdin
"""
PROBE = """
import ctypes, errno, os
fd = ctypes.CDLL(None, use_errno=True).inotify_init1(os.O_CLOEXEC)
print("free" if fd >= 0 else errno.errorcode.get(ctypes.get_errno(), "?"))
"""


def python_for_uid() -> str:
    """An interpreter of this Python version that INOTIFY_UID may run (this venv's may sit under a private
    directory such as /root); it imports this checkout and this venv's packages through PYTHONPATH."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        if os.path.exists(candidate):
            return candidate
    pytest.skip(f"no python{version} outside private directories to run as uid {INOTIFY_UID}")


def as_uid(argv: list[str], **kwargs: object) -> subprocess.Popen[str]:
    """Start `argv` as INOTIFY_UID, with this checkout and this venv's packages importable."""
    env = {"PATH": f"{Path(python_for_uid()).parent}:/usr/bin:/bin", "HOME": kwargs.pop("home", "/"),
           "PYTHONPATH": f"{REPO}:{sysconfig.get_paths()['purelib']}", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.Popen(argv, user=INOTIFY_UID, group=INOTIFY_UID, extra_groups=[], env=env, text=True,
                            **kwargs)  # type: ignore[call-overload]


@pytest.fixture
def exhausted(tmp_path: Path) -> Iterator[Path]:
    """A directory owned by INOTIFY_UID, while a process of that uid holds every inotify instance it may have."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run processes as a uid of their own")
    base = Path(tempfile.mkdtemp(prefix="swarm-inotify-", dir="/tmp"))
    os.chown(base, INOTIFY_UID, INOTIFY_UID)
    python = python_for_uid()
    runs = as_uid([python, "-c", "import agentmail, swarmd.cli, pydantic_core, watchdog"], stderr=subprocess.PIPE)
    if runs.wait(60) != 0:
        pytest.skip(f"{python} cannot import swarmd as uid {INOTIFY_UID}: {runs.stderr.read().strip()}")  # type: ignore[union-attr]
    holder = as_uid([python, "-c", EXHAUST], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        held, why = holder.stdout.readline().split()  # type: ignore[union-attr]
        probe = as_uid([python, "-c", PROBE], stdout=subprocess.PIPE)
        answer = probe.communicate(timeout=60)[0].strip()
        if answer != "EMFILE":
            pytest.skip(f"could not exhaust uid {INOTIFY_UID}'s inotify instances ({held} held, stopped by {why}; "
                        f"a new process got {answer!r})")
        yield base
    finally:
        holder.stdin.close()  # type: ignore[union-attr]
        holder.wait(60)
        shutil.rmtree(base, ignore_errors=True)


WATCHER = """
import logging, subprocess, sys, threading
from pathlib import Path
from agentmail import PostOffice
from swarmd.watch import watch_file
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
home = Path(sys.argv[1])
box = PostOffice(home, durable=False).register("w1")
ledger = home / "events.jsonl"
ledger.write_text("")
mail, written = threading.Event(), threading.Event()
watches = [box.on_arrival(mail.set), watch_file(ledger, written.set), watch_file(home / "pane-died", written.set)]
print("polling" if all(w.polling for w in watches) else "events", flush=True)
sender = [sys.executable, "-c", "from agentmail.cli import main; main()", "send", "--home", str(home), "--from", "sup", "--to", "w1",
          "--type", "STEER", "--field", "text=hello"]
got = []
waiter = threading.Thread(target=lambda: got.append(box.wait(timeout=60, claim=False)))  # a claim between two polls would hide the arrival from the poller
waiter.start()
subprocess.run(sender, check=True, capture_output=True)
with ledger.open("a") as f:
    f.write("{}\\n")
print("mail" if mail.wait(60) else "no mail", "write" if written.wait(60) else "no write", flush=True)
waiter.join()
print("waited" if got[0] is not None else "wait timed out", flush=True)
for w in watches:
    w.stop()
"""


def test_no_free_inotify_instance_every_watch_polls_with_one_warning(exhausted: Path) -> None:
    proc = as_uid([python_for_uid(), "-c", WATCHER, str(exhausted / "home")], stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE, cwd=exhausted)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert out.split("\n")[:3] == ["polling", "mail write", "waited"], out + err
    warnings = [line for line in err.splitlines() if "watching by polling" in line]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING"), err


def test_swarm_runs_a_plan_with_no_free_inotify_instance(exhausted: Path) -> None:
    home = exhausted / "proj" / ".swarm"
    plan = exhausted / "proj" / "plan.json"
    python = python_for_uid()
    script = f"""
set -e
mkdir -p {plan.parent}
{python} -m swarmd init --home {home} >/dev/null
printf 'name = "t"\\nmax_workers = 2\\ndurable = false\\ntick = 0.1\\n' > {home}/swarm.toml
printf '%s' '{json.dumps({"tasks": [
    {"id": "a", "title": "a", "description": "mkdir -p out && echo a > out/a"},
    {"id": "b", "title": "b", "description": "echo b > out/b", "blocked_by": ["a"]},
]})}' > {plan}
{python} -m swarmd run {plan} --home {home} --wait --timeout 120s
"""
    proc = as_uid(["bash", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=exhausted,
                  home=str(exhausted))
    try:
        out = proc.communicate(timeout=240)[0]
    finally:
        subprocess.run(["tmux", "-S", str(home / "run" / "tmux.sock"), "kill-server"], capture_output=True,
                       check=False)
    assert proc.returncode == 0, out
    assert (plan.parent / "out" / "a").read_text() == "a\n" and (plan.parent / "out" / "b").read_text() == "b\n"
    log = (home / "logs" / "supervisor.log").read_text()
    assert log.count("watching by polling") == 1, log

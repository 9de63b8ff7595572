"""`swarm doctor`: what a swarm needs from this machine, checked one line at a time (ok, warn or fail)."""

import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from swarmd.config import Config
from swarmd.executables import find_program, profile_program
from swarmd.home import SwarmHome

OK, WARN, FAIL = "ok", "warn", "fail"
MIN_TMUX = (3, 0)
SOCKET_LIMIT = 107  # bytes of sun_path on Linux, less its closing NUL
INOTIFY_DIR = Path("/proc/sys/fs/inotify")
# Enough for one watch per mailbox and a few per process; below these, watchers fall back to polling or fail.
INOTIFY_MINIMUMS = {"max_user_instances": 128, "max_user_watches": 8192, "max_queued_events": 16384}
VERSION_TIMEOUT = 15.0  # seconds for `PROGRAM --version`
TRANSPORT_TIMEOUT = 3.0  # seconds the NATS server of `transport` has to answer
FREE_FAIL, FREE_WARN = 100 << 20, 1 << 30  # bytes free on the home's file system


@dataclass(frozen=True)
class Finding:
    """One line of the report: what was checked, ok/warn/fail, and what was seen (or what to do)."""

    check: str
    status: str
    detail: str


def run_doctor(home: SwarmHome | None, config: Config) -> list[Finding]:
    """Every check, in order. `home` None: no home was found (reported, and the home's checks are skipped)."""
    findings = [tmux_version(), *inotify_limits()]
    if home is None:
        findings.append(Finding("home", WARN, "no swarm home here or in any parent: run `swarm init`"))
    else:
        findings += [socket_length(home), home_permissions(home), free_disk(home), mail_transport(home)]
    return findings + profile_programs(config)


def tmux_version() -> Finding:
    path = shutil.which("tmux")
    if path is None:
        return Finding("tmux", FAIL, "tmux is not on PATH: install tmux 3.x")
    try:
        out = subprocess.run([path, "-V"], capture_output=True, text=True, timeout=VERSION_TIMEOUT).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Finding("tmux", FAIL, f"`tmux -V` did not answer: {exc}")
    match = re.search(r"(\d+)\.(\d+)", out)
    if match is None:
        return Finding("tmux", WARN, f"cannot read the version from {out!r}")
    if (int(match[1]), int(match[2])) < MIN_TMUX:
        return Finding("tmux", FAIL, f"{out}: swarmd needs tmux {MIN_TMUX[0]}.{MIN_TMUX[1]} or newer")
    return Finding("tmux", OK, out)


def socket_length(home: SwarmHome) -> Finding:
    used = len(os.fsencode(home.tmux_socket))
    detail = f"{home.tmux_socket}: {used} of {SOCKET_LIMIT} bytes"
    return Finding("tmux socket", OK if used <= SOCKET_LIMIT else FAIL, detail)


def inotify_limits() -> list[Finding]:
    findings = []
    for name, minimum in INOTIFY_MINIMUMS.items():
        try:
            value = int((INOTIFY_DIR / name).read_text().strip())
        except (OSError, ValueError):
            findings.append(Finding(f"inotify {name}", WARN, f"cannot read {INOTIFY_DIR / name}: watchers poll"))
            continue
        status = OK if value >= minimum else WARN
        hint = "" if status == OK else f" (below {minimum}: raise it with sysctl fs.inotify.{name}=...)"
        findings.append(Finding(f"inotify {name}", status, f"{value}{hint}"))
    return findings


def home_permissions(home: SwarmHome) -> Finding:
    try:
        st = os.lstat(home.root)
    except OSError as exc:
        return Finding("home", FAIL, f"{home.root}: {exc.strerror}")
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != os.getuid():
        return Finding("home", FAIL, f"{home.root} belongs to uid {st.st_uid}, not you")
    if not os.access(home.root, os.W_OK | os.X_OK):
        return Finding("home", FAIL, f"{home.root} is not writable")
    if mode & 0o077:
        return Finding("home", WARN, f"{home.root} is {mode:04o}: others may read it (swarmd makes it 0700)")
    return Finding("home", OK, f"{home.root} ({mode:04o}, yours)")


def mail_transport(home: SwarmHome) -> Finding:
    """The files, or the NATS server of `transport` answering with JetStream within TRANSPORT_TIMEOUT s."""
    from agentmail.errors import MailError
    from agentmail.natslink import NatsLink
    from agentmail.transportsettings import read_transport

    try:
        settings = read_transport(home.root)
        if settings is None:
            return Finding("mail transport", OK, f"files under {home.mail_dir}")
        link = NatsLink(settings, deadline=TRANSPORT_TIMEOUT)
        try:
            info = link.call(lambda js: js.account_info(), "reach the server")
        finally:
            link.close()
    except MailError as exc:
        return Finding("mail transport", FAIL, str(exc))
    tls = "TLS" if settings.tls is not None else "no TLS (loopback)"
    return Finding("mail transport", OK, f"{settings.url}: JetStream answers, {info.streams} streams, {tls}")


def free_disk(home: SwarmHome) -> Finding:
    free = shutil.disk_usage(home.root).free
    status = FAIL if free < FREE_FAIL else WARN if free < FREE_WARN else OK
    return Finding("free disk", status, f"{free / (1 << 30):.1f} GiB free under {home.root}")


def profile_programs(config: Config) -> list[Finding]:
    """Each profile's program and its `--version`. A missing program fails for the default and helper
    profiles (every plan that names no profile needs it) and warns for the others."""
    needed = {config.default_profile, config.helper_profile}
    findings = []
    for name, profile in sorted(config.profiles.items()):
        program = profile_program(profile)
        label = f"profile {name}"
        if program is None:
            findings.append(Finding(label, WARN, "cannot tell which program it starts without running it"))
            continue
        path = find_program(program)
        if path is None:
            findings.append(Finding(label, FAIL if name in needed else WARN, f"`{program}` is not on PATH"))
            continue
        findings.append(_version(label, path))
    return findings


def _version(label: str, path: str) -> Finding:
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return Finding(label, WARN, f"{path}: `--version` gave no answer within {VERSION_TIMEOUT:g} s")
    except OSError as exc:
        return Finding(label, FAIL, f"{path}: cannot run it: {exc.strerror}")
    text = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
    first = text[0][:120] if text else ""
    if proc.returncode != 0:
        return Finding(label, WARN, f"{path}: `--version` exited {proc.returncode}: {first}")
    return Finding(label, OK, f"{path}: {first}")

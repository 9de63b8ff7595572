"""The `swarm` program's entry point: `--version` and the read-only commands that can answer without click,
pydantic or rich do so; every other command line goes to the click app (`swarmd.cli.main`).

`swarm board --json [--status S]... [--tag T] [--home H]` and `swarm status [--json] [--home H]` read the
ledger with `swarmd.ledger.lean`. They answer only when they can vouch for the app's own answer, byte for
byte: a home that the app would create directories in, refuse, or whose swarm.toml the models have not
validated as it is now; a ledger the lean reader is unsure of; a status with workers to show (their panes
are tmux's to tell): each goes to the app, which then says what it says (errors included). Any other
argument (a typo, `--help`) goes to the app too, so usage errors are click's. (git runs its builtins
without a parser of their own for the same reason: a command that prints a line should cost a process.)
"""

import fcntl
import gc
import os
import stat
import struct
import sys
from pathlib import Path
from typing import Any

from agentmail.locate import explicit_home, find_home_upward
from agentmail.pipes import write_out
from protocol.text import inert
from swarmd import __version__
from swarmd.home import SwarmHome
from swarmd.ledger import lean
from swarmd.ledger.waiting import waiting_on

CHECKED_CONFIG = "config-checked"  # run/<this>: the swarm.toml the models last validated, after a version line
# The ledger's files: the log, the lock and the projection snapshots (ledger/<name>.json).
LEDGER_FILES = ("events.jsonl", ".lock", "board.json", "registry.json", "stats.json")
_FLOCK = "hhqqi"  # struct flock, as swarmd.supervisor.daemon reads the supervisor's lock
_OPTIONS = {"board": {"--home": "home", "--status": "status", "--tag": "tag"}, "status": {"--home": "home"}}


def main() -> None:
    """Answer on the lean path if it can, else run the click app."""
    if not answer(sys.argv[1:]):
        from swarmd.cli import main as app

        app(prog_name="swarm")


def answer(args: list[str]) -> bool:
    """Print the answer to `swarm ARGS` if the lean path can vouch for it; False (nothing printed) if not."""
    if args == ["--version"]:  # click's version option says it so
        write_out(f"swarm, version {__version__}\n".encode())
        return True
    parsed = parse(args)
    if parsed is None:
        return False
    command, options = parsed
    gc.disable()  # a short process of acyclic data: a collection over the whole board would only cost
    try:
        home = usable_home(options["home"])
        out = None if home is None else (board_json(home, options["status"], options["tag"]) if command == "board"
                                         else status(home, options["json"]))
    except (lean.Unsure, OSError):
        out = None
    if out is None:
        gc.enable()  # the app answers
        return False
    write_out(out)
    return True


def parse(args: list[str]) -> tuple[str, dict[str, Any]] | None:
    """(command, options) for the command lines the lean path takes; None for any other."""
    if not args or args[0] not in _OPTIONS:
        return None
    command, valued = args[0], _OPTIONS[args[0]]
    options: dict[str, Any] = {"json": False, "home": None, "status": [], "tag": None}
    rest = iter(args[1:])
    for arg in rest:
        if arg == "--json":
            options["json"] = True
            continue
        name, eq, value = arg.partition("=")
        key = valued.get(name)
        if key is None:
            return None
        value = value if eq else next(rest, "")
        if not value or value.startswith("-") or (key != "status" and options[key] is not None):
            return None
        if key == "status":
            if value not in lean.TASK_STATUSES:
                return None
            options["status"].append(value)
        else:
            options[key] = value
    if command == "board" and not options["json"]:
        return None  # the tables are rich's
    return command, options


def usable_home(named: str | None) -> SwarmHome | None:
    """The home as `swarm` finds it, if the app would read it as it is: it exists with every directory there,
    private and ours (the app would create or mend them otherwise), its ledger files are no links, tmux is
    installed, and the models validated its swarm.toml as it is now. None for any other."""
    found = explicit_home(named) or find_home_upward()
    if found is None:
        return None
    home = SwarmHome(found)
    for path in (home.root, home.mail_dir, home.ledger_dir, home.logs_dir, home.run_dir, home.run_dir / "exits",
                 home.prompts_dir, home.tmux_socket.parent):
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) != 0o700:
            return None
    if not os.access(home.root, os.W_OK | os.X_OK) or not _on_path("tmux"):
        return None
    if any(os.path.islink(home.ledger_dir / name) for name in LEDGER_FILES):
        return None
    config = _read(home.config_file)
    if config is None or _read(home.run_dir / CHECKED_CONFIG) != _checked_form(config):
        return None
    return home


def remember_checked_config(home: SwarmHome, before: bytes | None) -> None:
    """Record that the models validated swarm.toml as `before` (its bytes read before they loaded it), unless
    it changed meanwhile or is recorded already; a home that cannot be written just is not recorded."""
    if before is None or _read(home.config_file) != before:
        return
    target = home.run_dir / CHECKED_CONFIG
    if _read(target) == _checked_form(before):
        return
    tmp = home.run_dir / f".{CHECKED_CONFIG}.{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(_checked_form(before) or b"")
        os.replace(tmp, target)
    except OSError:
        pass
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def read_config_bytes(home: SwarmHome) -> bytes | None:
    """swarm.toml's bytes as they are now (None if unreadable), to be remembered once the models accept them."""
    return _read(home.config_file)


def board_json(home: SwarmHome, statuses: list[str], tag: str | None) -> bytes:
    """What `swarm board --json` prints."""
    tasks = [t for t in lean.read_board(home.ledger_dir).values()
             if (not statuses or t["status"] in statuses) and (tag is None or tag in t["tags"])]
    return lean.dump_json(tasks) + b"\n"


def status(home: SwarmHome, as_json: bool) -> bytes:
    """What `swarm status [--json]` prints for a swarm with no worker to show."""
    import json

    by_status: dict[str, int] = {}
    waiting = []
    for task in lean.read_board(home.ledger_dir, supervisor_only=True).values():
        by_status[task["status"]] = by_status.get(task["status"], 0) + 1
        if note := waiting_on(task["status"], ((n["author"], n["kind"], n["text"]) for n in task["notes"])):
            waiting.append({"task": task["id"], "note": note})
    pid = running_pid(home)
    report = {"home": str(home.root), "supervisor": {"running": pid is not None, "pid": pid},
              "dispatch": {"paused": os.path.lexists(home.run_dir / "dispatch-paused")}, "workers": [],
              "tasks": by_status, "waiting": waiting}
    text = json.dumps(report, indent=2, default=str) if as_json else "\n".join(status_lines(report))
    return (text + "\n").encode()


def status_lines(report: dict[str, Any]) -> list[str]:
    """`swarm status` for people when it has no worker to show: the supervisor's line, and the tasks' counts."""
    sup = report["supervisor"]
    running = f"running (pid {sup['pid']})" if sup["running"] else "not running"
    if report.get("dispatch", {}).get("paused"):
        running += "; dispatch paused (`swarm resume` lets it go on)"
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report["tasks"].items())) or "none"
    return [f"supervisor: {running}", "workers: none", f"tasks: {counts}", *waiting_lines(report)]


def waiting_lines(report: dict[str, Any]) -> list[str]:
    """A line for each open task that waits on something the supervisor said (labels no place offers)."""
    return [inert(f"{w['task']} {w['note']}") for w in report.get("waiting", [])]


def running_pid(home: SwarmHome) -> int | None:
    """The pid of this home's supervisor, or None: `swarmd.supervisor.daemon.running_pid`, whose module
    needs the models."""
    lock = home.run_dir / "supervisor.lock"
    if not lock.exists():
        return None
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        kind, _, _, _, pid = struct.unpack(_FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, query))
    finally:
        os.close(fd)
    return None if kind == fcntl.F_UNLCK else pid


def _checked_form(config: bytes | None) -> bytes | None:
    return None if config is None else f"swarmd {__version__}\n".encode() + config


def _read(path: Path) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        try:
            return f.read() if stat.S_ISREG(os.fstat(fd).st_mode) else None
        except OSError:
            return None


def _on_path(program: str) -> bool:
    return any(os.access(os.path.join(d, program), os.X_OK) for d in os.environ.get("PATH", "").split(os.pathsep) if d)

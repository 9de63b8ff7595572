"""A typed layer over the swarm's private tmux server: spawn, inspect, steer and kill worker sessions.

Every call names the private socket (`tmux -S`), never the user's default server. Each operation is
one tmux invocation; an operation that needs several tmux commands chains them with `;` in that one
invocation, so spawning a worker costs one process start, and a wave of workers (`spawn_many`) one
process start per 12 KB of commands.

Session names: tmux rewrites `.` and `:` in session names to `_` and reads them as separators in
targets. A swarm session name may contain `.` (agent names do), so it is stored in tmux with `.`
written as `,` (a character no swarm name has) and read back the same way; targets use the exact
form `=name`, never a prefix match.
"""

import os
import re
import shlex
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from swarmd.errors import SwarmError

# An agent name ([a-z0-9][a-z0-9._-]{0,63}) with room for a swarm prefix in front of it.
SESSION_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Fields of a pane line; the unit separator cannot occur in a session name (tmux escapes control
# characters in names) and the free-form command comes last.
_SEP = "\x1f"
_PANE_FORMAT = _SEP.join(("#{session_name}", "#{pane_id}", "#{pane_pid}", "#{pane_dead}",
                          "#{pane_dead_status}", "#{pane_dead_signal}", "#{session_created}",
                          "#{pane_current_command}"))
_TIMEOUT = 10.0
# Bytes of arguments chained into one tmux invocation: tmux refuses a command longer than its message size
# (16 KiB, MAX_IMSGSIZE) with "command too long".
_BATCH_BYTES = 12_000
# What tmux says when no server answers (or it exits while answering, as after kill-server).
_NOT_RUNNING = ("no server running", "error connecting to", "server exited unexpectedly")
# What tmux says of a session that is not there: never was, or ended while we asked ("no current target":
# tmux 3.3 when the session is being destroyed by another client at the same moment).
_NO_SESSION = ("can't find session", "no current target")
# What list-panes says on a server whose last session has just ended (it exits a moment later).
_NO_PANES = "no current target"


class TmuxError(SwarmError):
    """A tmux operation failed or was refused; the message carries tmux's own error in one line."""


@dataclass(frozen=True)
class PaneInfo:
    """One worker pane as tmux sees it; a dead pane stays (remain-on-exit) with its exit status."""

    session: str
    pane_id: str
    pid: int
    dead: bool
    exit_status: int | None
    started: float | None
    command: str
    signal: int | None = None


@dataclass(frozen=True)
class SessionSpec:
    """A detached session to start: `command` runs under /bin/sh (not the user's default-shell) as
    `exec <shlex-quoted argv>`, so the pane's pid is the command's and its exit status is the pane's; `env` is
    added to its environment, `cwd` is where it starts, its output is appended to `log_path` (tmux
    pipe-pane), and `on_exit` is the server's pane-died hook."""

    session: str
    command: list[str]
    env: dict[str, str]
    cwd: Path
    log_path: Path | None = None
    on_exit: list[str] | None = None
    width: int = 200
    height: int = 50

    def commands(self) -> list[list[str]]:
        """The tmux commands that start this session (new-session, then pipe-pane); TmuxError if it cannot be."""
        if not self.command:
            raise TmuxError(f"no command given for tmux session {self.session!r}")
        if not Path(self.cwd).is_dir():
            raise TmuxError(f"working directory {self.cwd} of tmux session {self.session!r} is not a directory")
        new_session = ["new-session", "-d", "-s", _tmux_name(self.session), "-x", str(self.width), "-y",
                       str(self.height), "-c", str(Path(self.cwd).absolute()), *_env_args(self.env), "-P", "-F",
                       _PANE_FORMAT, "/bin/sh", "-c", "exec " + shlex.join(self.command)]
        if self.log_path is None:
            return [new_session]
        return [new_session, _pipe_to_log(self.session, self.log_path)]


def _pipe_to_log(session: str, log_path: Path) -> list[str]:
    """The command that appends the session's pane output to `log_path` (created private); TmuxError if it
    cannot be created."""
    log = _create_log(log_path)
    return ["pipe-pane", "-o", "-t", _target(session), _no_formats("exec cat >> " + shlex.quote(str(log)))]


def check_session_name(name: str) -> str:
    """Return `name` if it can name a swarm session, else raise TmuxError."""
    if not SESSION_NAME.fullmatch(name):
        raise TmuxError(f"bad tmux session name {name!r}: use 1-128 characters of a-z, 0-9, '.', '_' "
                        "and '-', starting with a letter or digit")
    return name


def _tmux_name(name: str) -> str:
    return check_session_name(name).replace(".", ",")


def _swarm_name(tmux_name: str) -> str:
    return tmux_name.replace(",", ".")


def _target(name: str) -> str:
    """An exact-match target for the session's current pane (`=name:`), safe for any command."""
    return f"={_tmux_name(name)}:"


def _escape_arg(arg: str) -> str:
    """tmux splits commands at an argument that ends in ';'; `\\;` keeps the ';' literal."""
    return arg[:-1] + "\\;" if arg.endswith(";") else arg


def _chain(*commands: list[str]) -> list[str]:
    """Join tmux commands into one argument list, separated by ';'."""
    args: list[str] = []
    for command in commands:
        if args:
            args.append(";")
        args.extend(_escape_arg(arg) for arg in command)
    return args


def _no_formats(text: str) -> str:
    """Escape `#` for arguments that tmux expands as formats (run-shell, pipe-pane)."""
    return text.replace("#", "##")


def _tmux_quote(text: str) -> str:
    """Quote `text` as one argument of a command that tmux itself parses (a hook's command)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "no message"


def _optional_int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _parse_pane(line: str) -> PaneInfo | None:
    fields = line.split(_SEP, 7)
    if len(fields) != 8 or not fields[2].isdigit():
        return None
    session, pane_id, pid, dead, status, signal, created, command = fields
    return PaneInfo(session=_swarm_name(session), pane_id=pane_id, pid=int(pid), dead=dead == "1",
                    exit_status=_optional_int(status), started=float(created) if created.isdigit() else None,
                    command=command, signal=_optional_int(signal))


def _create_log(path: Path) -> Path:
    """Create (or keep) the log file private to the user, refusing a symlink; return its absolute path."""
    path = path.absolute()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise TmuxError(f"cannot create log file {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path


def _env_args(env: dict[str, str]) -> list[str]:
    args: list[str] = []
    for key, value in env.items():
        if not _ENV_KEY.fullmatch(key) or "\0" in value:
            raise TmuxError(f"bad environment variable {key!r}: names are letters, digits and '_', "
                            "values have no NUL")
        args += ["-e", f"{key}={value}"]
    return args


class TmuxServer:
    """The swarm's private tmux server at `socket_path`; started by the first `spawn`."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = Path(socket_path)

    def _run(self, args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = ["tmux", "-S", str(self.socket_path), *args]
        try:
            return subprocess.run(argv, capture_output=True, text=True, errors="replace", input=stdin,
                                  timeout=_TIMEOUT, check=False)
        except FileNotFoundError:
            raise TmuxError("tmux is not installed: install tmux 3.x and try again") from None
        except subprocess.TimeoutExpired:
            raise TmuxError(f"tmux on {self.socket_path} did not answer within {_TIMEOUT:.0f}s") from None

    def _check(self, result: subprocess.CompletedProcess[str], doing: str) -> str:
        if result.returncode != 0:
            raise TmuxError(f"tmux could not {doing}: {_one_line(result.stderr)}")
        return result.stdout

    @staticmethod
    def _not_running(result: subprocess.CompletedProcess[str]) -> bool:
        refused = result.returncode != 0 and result.stderr.startswith(_NOT_RUNNING)
        return refused and "Permission denied" not in result.stderr

    def is_running(self) -> bool:
        result = self._run(["list-sessions", "-F", "#{session_id}"])
        if self._not_running(result):
            return False
        self._check(result, "list sessions")
        return True

    def spawn(self, session: str, command: list[str], *, env: dict[str, str], cwd: Path,
              log_path: Path | None = None, on_exit: list[str] | None = None, width: int = 200,
              height: int = 50) -> PaneInfo:
        """Start `command` in a new detached session, in one tmux invocation (see `SessionSpec` and
        `spawn_many`); raises TmuxError when it cannot."""
        result = self.spawn_many([SessionSpec(session, command, env=env, cwd=cwd, log_path=log_path,
                                              on_exit=on_exit, width=width, height=height)])[0]
        if isinstance(result, TmuxError):
            raise result
        return result

    def spawn_many(self, specs: list["SessionSpec"]) -> list["PaneInfo | TmuxError"]:
        """Start every session of `specs`, chained into as few tmux invocations as tmux's command length allows
        (one process start for a whole wave of workers, not one each); the result for each spec, in order, is
        its pane or the TmuxError that kept it from starting (the others start all the same).

        remain-on-exit is set before the first session exists, so even an instant exit leaves a dead pane to
        read; the pane-died hook (`on_exit`, see `set_exit_hook`) is set in the same invocation: a server exits
        with its last session, so each invocation that may start a new server sets it again."""
        results: list[PaneInfo | TmuxError | None] = [None] * len(specs)
        batch: list[tuple[int, list[list[str]]]] = []
        size = 0
        for index, spec in enumerate(specs):
            try:
                commands = spec.commands()
            except TmuxError as exc:
                results[index] = exc
                continue
            length = sum(len(arg) + 1 for command in commands for arg in command)
            if batch and size + length > _BATCH_BYTES:
                self._spawn_batch(specs, batch, results)
                batch, size = [], 0
            batch.append((index, commands))
            size += length
        if batch:
            self._spawn_batch(specs, batch, results)
        return [r if r is not None else TmuxError("tmux did not start the session") for r in results]

    def _spawn_batch(self, specs: list["SessionSpec"], batch: list[tuple[int, list[list[str]]]],
                     results: list["PaneInfo | TmuxError | None"]) -> None:
        """One tmux invocation for the sessions of `batch`; tmux stops a chain at its first failing command, so
        the sessions after a failed one are started by another invocation."""
        chain: list[list[str]] = [["set-option", "-g", "remain-on-exit", "on"]]
        hook = next((specs[i].on_exit for i, _ in batch if specs[i].on_exit), None)
        for n, (_, commands) in enumerate(batch):
            chain += commands
            if n == 0 and hook:
                chain.append(self._exit_hook(hook))
        for _ in range(3):  # a server whose last session has just ended is exiting: the next try starts a new one
            result = self._run(_chain(*chain))
            if not self._not_running(result):
                break
        lines = [line for line in result.stdout.splitlines() if line]
        for (index, _), line in zip(batch, lines):
            pane = _parse_pane(line)
            results[index] = pane if pane is not None else TmuxError(
                f"tmux started session {specs[index].session!r} but did not describe its pane: {line!r}")
        if lines:
            self._make_socket_private()
        if result.returncode == 0 and len(lines) >= len(batch):
            return
        if len(lines) < len(batch):
            index = batch[len(lines)][0]
            session = specs[index].session
            if "duplicate session" in result.stderr:
                results[index] = TmuxError(f"tmux session {session!r} already exists: pick another name or kill "
                                           "it first")
            else:
                results[index] = TmuxError(f"tmux could not start session {session!r}: {_one_line(result.stderr)}")
            rest = batch[len(lines) + 1:]
            if rest:
                self._spawn_batch(specs, rest, results)

    def rename_sessions(self, renames: list[tuple[str, str, Path | None]]) -> list[TmuxError | None]:
        """Rename each session `old` to `new` and, with a log path, append its pane's output there from now on
        (pipe-pane): one tmux invocation for all. The result for each, in order: None, or the TmuxError that
        kept it from being renamed (the others are renamed all the same)."""
        results: list[TmuxError | None] = [None] * len(renames)
        chain: list[list[str]] = []
        for index, (old, new, log_path) in enumerate(renames):
            try:
                chain += [["rename-session", "-t", f"={_tmux_name(old)}", _tmux_name(new)],
                          *([_pipe_to_log(new, log_path)] if log_path is not None else []),
                          ["display-message", "-p", "-t", _target(new), str(index)]]  # one line: this one is done
            except TmuxError as exc:
                results[index] = exc
        if not chain:
            return results
        result = self._run(_chain(*chain))
        done = {int(line) for line in result.stdout.split() if line.isdigit()}
        failed = [i for i, (old, new, _) in enumerate(renames) if i not in done and results[i] is None]
        if failed:
            first = renames[failed[0]]
            results[failed[0]] = TmuxError(f"tmux could not rename session {first[0]!r} to {first[1]!r}: "
                                           f"{_one_line(result.stderr)}")
            rest = failed[1:]  # tmux stopped its chain at the first failure: the rest were not tried
            for index, error in zip(rest, self.rename_sessions([renames[i] for i in rest])):
                results[index] = error
        return results

    def recycle_session(self, old: str, new: str) -> TmuxError | None:
        """Rename session `old` to `new`, close its pane's log pipe, reset its terminal (send-keys -R: modes,
        colours, the screen) and clear its history: a pane made ready for another worker, in one tmux
        invocation. None, or the TmuxError that kept it from being done."""
        result = self._run(_chain(["rename-session", "-t", f"={_tmux_name(old)}", _tmux_name(new)],
                                  ["pipe-pane", "-t", _target(new)], ["send-keys", "-R", "-t", _target(new)],
                                  ["clear-history", "-t", _target(new)]))
        if result.returncode != 0:
            return TmuxError(f"tmux could not make session {old!r} ready again: {_one_line(result.stderr)}")
        return None

    def _make_socket_private(self) -> None:
        """The swarm's socket is the user's alone; some tmux releases leave it group-accessible."""
        mode = self.socket_path.stat().st_mode
        if mode & 0o077:
            os.chmod(self.socket_path, stat.S_IMODE(mode) & 0o700)

    def panes(self) -> dict[str, PaneInfo]:
        """Every session's first pane, by session name, from one tmux call; {} when no server runs."""
        result = self._run(["list-panes", "-a", "-F", _PANE_FORMAT])
        if self._not_running(result) or (result.returncode != 0 and _NO_PANES in result.stderr):
            return {}
        found: dict[str, PaneInfo] = {}
        for line in self._check(result, "list panes").splitlines():
            pane = _parse_pane(line)
            if pane is not None:
                found.setdefault(pane.session, pane)
        return found

    def pane(self, session: str) -> PaneInfo | None:
        check_session_name(session)
        return self.panes().get(session)

    def sessions(self, prefix: str = "") -> list[str]:
        """Names of the sessions that start with `prefix`, sorted; [] when no server runs."""
        result = self._run(["list-sessions", "-F", "#{session_name}"])
        if self._not_running(result):
            return []
        names = (_swarm_name(line) for line in self._check(result, "list sessions").splitlines())
        return sorted(name for name in names if name.startswith(prefix))

    def kill_session(self, session: str) -> bool:
        """Kill `session` and its processes; False if it did not exist."""
        result = self._run(["kill-session", "-t", f"={_tmux_name(session)}"])
        if self._not_running(result) or (result.returncode != 0 and any(m in result.stderr for m in _NO_SESSION)):
            return False
        self._check(result, f"kill session {session!r}")
        return True

    def kill_sessions(self, sessions: list[str]) -> None:
        """Kill every session of `sessions` (those already gone are skipped) in one tmux invocation when all
        exist; tmux stops a chain at a session that does not, and the rest are then killed one by one."""
        if len(sessions) == 1:
            self.kill_session(sessions[0])
        elif sessions:
            result = self._run(_chain(*(["kill-session", "-t", f"={_tmux_name(s)}"] for s in sessions)))
            if result.returncode != 0 and not self._not_running(result):
                for session in sessions:
                    self.kill_session(session)

    def kill_server(self, timeout: float = 5.0) -> None:
        """Kill the server and every session on it; return once it no longer answers."""
        result = self._run(["kill-server"])
        if not self._not_running(result):
            self._check(result, "kill the server")
        deadline = time.monotonic() + timeout
        while self.is_running():
            if time.monotonic() > deadline:
                raise TmuxError(f"tmux server on {self.socket_path} still runs {timeout:.0f}s after kill-server")
            time.sleep(0.01)

    def send_keys(self, session: str, text: str, *, enter: bool = True) -> None:
        """Type `text` into the session's pane literally (a key name such as 'C-c' stays text), then Enter."""
        target = _target(session)
        commands = [["send-keys", "-t", target, "-l", "--", text]] if text else []
        if enter:
            commands.append(["send-keys", "-t", target, "Enter"])
        if commands:
            self._check(self._run(_chain(*commands)), f"send keys to session {session!r}")

    def press(self, session: str, *keys: str) -> None:
        """Send tmux key names (`Up`, `Down`, `Enter`, `Escape`) to the session's pane, in one invocation."""
        if keys:
            self._check(self._run(["send-keys", "-t", _target(session), *keys]), f"send keys to session {session!r}")

    def capture(self, session: str, lines: int = 200) -> str:
        """The pane's last `lines` lines of text (history included, blank screen below dropped)."""
        args = ["capture-pane", "-p", "-J", "-t", _target(session), "-S", str(-max(lines, 1))]
        text = self._check(self._run(args), f"capture session {session!r}")
        kept = text.rstrip().splitlines()[-lines:] if lines > 0 else []
        return "".join(line + "\n" for line in kept)

    def screen(self, session: str, *, styles: bool = False) -> str:
        """The pane's visible screen as text, one line per row (no history); with `styles`, its SGR escape
        sequences (colours, bold, faint) kept in the text (`capture-pane -e`)."""
        args = ["capture-pane", "-p", *(["-e"] if styles else []), "-t", _target(session)]
        return self._check(self._run(args), f"capture session {session!r}")

    def leave_copy_mode(self, session: str) -> None:
        """Take the pane out of copy (or any other) mode, so keys reach the program, not the mode."""
        target = _target(session)
        cancel = shlex.join(["send-keys", "-t", target, "-X", "cancel"])  # a command string tmux parses
        self._check(self._run(["if-shell", "-F", "-t", target, "#{pane_in_mode}", cancel]),
                    f"leave copy mode in session {session!r}")

    def load_buffer(self, name: str, text: str) -> None:
        """Put `text` into the named paste buffer `name`, read from stdin: the text never is an argument."""
        self._check(self._run(["load-buffer", "-b", name, "-"], stdin=text), f"load paste buffer {name!r}")

    def paste_buffer(self, session: str, name: str) -> None:
        """Paste buffer `name` into the pane as a bracketed paste (if the program asked for it), then delete it."""
        self._check(self._run(["paste-buffer", "-p", "-d", "-b", name, "-t", _target(session)]),
                    f"paste into session {session!r}")

    def delete_buffer(self, name: str) -> None:
        """Delete the named paste buffer; no error if it is gone already."""
        self._run(["delete-buffer", "-b", name])

    def attach_argv(self, session: str) -> list[str]:
        """The argv that attaches a terminal to `session` (for os.execvp)."""
        return ["tmux", "-S", str(self.socket_path), "attach-session", "-t", f"={_tmux_name(session)}"]

    def set_exit_hook(self, command: list[str]) -> None:
        """Run `command` (in the background, via run-shell) whenever a pane dies.

        The command sees SWARM_PANE_SESSION (the swarm session name), SWARM_PANE_ID, and
        SWARM_PANE_STATUS or SWARM_PANE_SIGNAL (the one that applies is non-empty) in its
        environment. Needs a running server: call it after the first spawn.
        """
        self._check(self._run(_chain(self._exit_hook(command))), "set the pane-died hook")

    @staticmethod
    def _exit_hook(command: list[str]) -> list[str]:
        if not command:
            raise TmuxError("no command given for the pane-died hook")
        shell = ("SWARM_PANE_SESSION=#{s/,/./;q:session_name} SWARM_PANE_ID=#{pane_id} "
                 "SWARM_PANE_STATUS=#{pane_dead_status} SWARM_PANE_SIGNAL=#{pane_dead_signal} "
                 + _no_formats(shlex.join(command)))
        return ["set-hook", "-g", "pane-died", "run-shell -b " + _tmux_quote(shell)]

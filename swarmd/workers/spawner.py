"""Starting a worker: its name, prompt file, environment and tmux session."""

import os
import re
import shlex
import sys
import uuid
from pathlib import Path
from collections.abc import Callable
from typing import NamedTuple

from protocol.names import validate_agent_name
from protocol.task import AttemptOutcome, Task
from swarmd.agents import adapter
from swarmd.agents.base import WorkerSetup, last_session
from swarmd.agents.claude import session_args
from swarmd.config import Config, Profile
from swarmd.errors import ConfigError
from swarmd.home import SwarmHome, project_dir
from swarmd.skills import SkillHub, skills_dir
from swarmd.tokens import TOKEN_ENV, handover_line, issue_token
from swarmd.workers.forkserver import ForkServer
from swarmd.workers.prompt import render_prompt, write_prompt
from swarmd.workers.promptqueue import PromptQueue
from swarmd.workers.tmux import PaneInfo, SessionSpec, TmuxServer
from swarmd.workers.warmpanes import Order

_PLACEHOLDER = re.compile(r"\{(prompt_file|task_id|title|agent|home|python|session_id|claude_session)\}")
_WORDS = frozenset({"claude_session"})  # placeholders whose value is already a list of quoted words
WRAPPER = "{python} -m swarmd.worker"  # a profile command that starts with it can be started by the fork server


def render_command(template: str, values: dict[str, str]) -> str:
    """Fill the known placeholders, each shell-quoted (`claude_session`: already quoted words); everything else in
    the template is left as written."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), "") if m.group(1) in _WORDS
                            else shlex.quote(values.get(m.group(1), "")), template)

# An interactive agent draws in a terminal a person may attach to, and swarmd reads its styles (the faint
# placeholder of an empty composer is not text someone typed: `delivery.unfaint`). Under `CI` (any value) or
# `NO_COLOR`, claude-code's terminal library draws no style at all (the supports-color rules), so the pane
# would show its placeholder as typed text and hold every delivery. The pane's shell unsets both.
TERMINAL_STYLES = "unset CI NO_COLOR"


def wrapper_args(template: str) -> str | None:
    """The part of a profile's command template after `{python} -m swarmd.worker`, when the command is that
    one simple command (words only: no `;`, `|`, `&`, redirection or second line); else None."""
    if not template.startswith(WRAPPER + " ") or "\n" in template:
        return None
    rest = template[len(WRAPPER):]
    lexer = shlex.shlex(rest, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        words = list(lexer)
    except ValueError:  # an unclosed quote: leave it to the shell to report
        return None
    return None if any(word and set(word) <= set(lexer.punctuation_chars) for word in words) else rest


class Prepared(NamedTuple):
    """A worker ready to start: its session's name and log; `fresh()`, its session to start the ordinary way
    (it writes the token's handover file: call it only to start that session); and, when its profile runs the
    worker wrapper and a fork server runs, the `Order` that starts it in a warm pane instead
    (`swarmd.workers.warmpanes`)."""

    session: str
    log_path: Path
    fresh: Callable[[], SessionSpec]
    order: Order | None


class Spawner:
    """Prepares and starts worker sessions on the swarm's tmux server; with a running `forkserver`, a pane
    whose profile runs the worker wrapper starts it through that server (`swarmd.workers.forkserver`)."""

    def __init__(self, home: SwarmHome, config: Config, tmux: TmuxServer,
                 forkserver: ForkServer | None = None) -> None:
        self.home, self.config, self.tmux, self.forkserver = home, config, tmux, forkserver
        self.pool_address: str | None = None  # the pane pool's, while it runs (swarmd.workers.warmpanes)

    def session_name(self, worker: str) -> str:
        return f"{self.config.name}-{worker}"

    def log_path(self, worker: str) -> Path:
        return self.home.logs_dir / f"{worker}.log"

    def profile(self, name: str | None) -> Profile:
        chosen = name or self.config.default_profile
        if chosen not in self.config.profiles:
            raise ConfigError(f"unknown worker profile {chosen!r}: swarm.toml defines {', '.join(sorted(self.config.profiles))}")
        return self.config.profiles[chosen]

    def spawn(self, task: Task, *, worker: str, attempt: int, max_attempts: int = 1, role: str = "worker",
              prompt: str | None = None, workdir: Path | None = None, env: dict[str, str] | None = None,
              git_note: str = "") -> PaneInfo:
        """Write the prompt and start the worker's session (see `prepare`); raises SwarmError when it cannot."""
        spec = self.prepare(task, worker=worker, attempt=attempt, max_attempts=max_attempts, role=role,
                            prompt=prompt, workdir=workdir, env=env, git_note=git_note).fresh()
        return self.tmux.spawn(spec.session, spec.command, env=spec.env, cwd=spec.cwd, log_path=spec.log_path,
                               on_exit=spec.on_exit)

    def prepare(self, task: Task, *, worker: str, attempt: int, max_attempts: int = 1, role: str = "worker",
                prompt: str | None = None, workdir: Path | None = None, env: dict[str, str] | None = None,
                git_note: str = "") -> Prepared:
        """Write the prompt and everything else the worker needs; return its session, for `TmuxServer.spawn_many`
        to start with others, and its warm pane's order when it can have one. The task text stays in the prompt
        file.

        `workdir` (an attempt's worktree) replaces the task's directory, `env` adds to the worker's environment,
        `git_note` is a section of the prompt about the attempt's branch. Raises SwarmError (ConfigError for an
        unknown profile)."""
        profile = self.profile(task.profile if role == "worker" else self.config.helper_profile)
        prompt_file = self.home.prompts_dir / f"{worker}.md"
        text = prompt or render_prompt(task, agent=worker, attempt=attempt, max_attempts=max_attempts,
                                       home=self.home.root, git_note=git_note)
        write_prompt(prompt_file, text)
        if profile.mode == "interactive":  # its first prompt, delivered into the pane once the agent is idle
            PromptQueue(self.home.run_dir, worker).push(text, kind="task", sender="supervisor")
        log = self.log_path(worker)
        env = {
            "SWARM_HOME": str(self.home.root), "SWARM_AGENT": worker, "SWARM_ROLE": role, "SWARM_TASK": task.id,
            "SWARM_ATTEMPT": str(attempt), "SWARM_PROMPT": str(prompt_file), "SWARM_LOG": str(log),
            # The wrapper's two settings, so that it starts without loading swarm.toml's model:
            "SWARM_HEARTBEAT_INTERVAL": repr(self.config.heartbeat_interval),
            "SWARM_DURABLE": "1" if self.config.durable else "0",
            "SWARM_TRANSPORT": "files" if self.config.transport == "files" else "nats",  # fast path or models
            TOKEN_ENV: issue_token(self.home, worker), **(env or {}), **profile.env,
        }  # the token is for the agent adapter's config; it reaches the pane by handover, never on tmux's argv
        workdir = workdir or self.workdir(task, profile)
        session_id = str(uuid.uuid4())
        resume = self.predecessor(task) if role == "worker" else None
        if profile.agent is not None:
            env.update(self.prepare_agent(profile, task, worker, workdir, env, session_id, resume))
        env = self.with_skills(worker, env)
        values = {
            "prompt_file": str(prompt_file), "task_id": task.id, "agent": worker,
            "home": str(self.home.root), "python": sys.executable, "session_id": session_id,
            "claude_session": shlex.join(session_args(session_id, resume[1] if resume else None)),
        }
        # `agentmail` and `swarm` in a worker are the ones this supervisor runs from, venv or not. (tmux gives a
        # new pane the PATH of its client, whatever -e says, so it is set in the shell.)
        # As its last act the pane's first process (the shell, or the fork server's client) records the exit
        # status and wakes the supervisor: tmux 3.3 now and then shows a pane dead without its status, and then
        # fires no pane-died hook either.
        forked, server = wrapper_args(profile.command), self.forkserver
        order = None
        if forked is not None and server is not None and server.ready():
            words = render_command(forked, values)
            order = Order(args=shlex.split(words), cwd=workdir, exit_file=self.exit_file(worker),
                          env={**env, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"},
                          unset=("CI", "NO_COLOR") if profile.mode == "interactive" else ())
            pool = (self.pool_address, self.session_name(worker), [*env, "PATH"]) \
                if self.pool_address and role == "worker" else None  # a helper's pane is not taken back
            run = server.pane_command(self.exit_file(worker), self.pane_died_file, words, pool)
        else:
            exit_file, wake = shlex.quote(str(self.exit_file(worker))), shlex.quote(str(self.pane_died_file))
            run = (f'{render_command(profile.command, values)}\n'
                   f'status=$?; (umask 077; echo "$status" > {exit_file}; : > {wake}); exit "$status"')
        if profile.mode == "interactive":
            run = f"{TERMINAL_STYLES}\n{run}"
        token = env.pop(TOKEN_ENV)

        def fresh() -> SessionSpec:
            command = (f'PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"; export PATH\n'
                       f'{handover_line(self.home, worker, token)}\n{run}')
            return SessionSpec(self.session_name(worker), ["sh", "-c", command], env=env, cwd=workdir, log_path=log,
                               on_exit=self.on_exit)
        return Prepared(self.session_name(worker), log, fresh, order)

    @property
    def on_exit(self) -> list[str]:
        """The pane-died hook's command (tmux's, for every pane of the server): it wakes the supervisor to list
        the panes (`pane_hook_file`), for a pane that ended without its first process's last act. The file is
        made private, as everything in the home (tmux runs the hook with its own umask)."""
        return ["sh", "-c", 'umask 077 && : > "$1"', "sh", str(self.pane_hook_file)]

    def predecessor(self, task: Task) -> tuple[Path, str] | None:
        """After a CHECKPOINT: the agent directory and session id of the worker that took it, to go on from."""
        last = task.attempts[-1] if task.attempts else None
        if last is None or last.outcome != AttemptOutcome.CHECKPOINT or not last.worker:
            return None
        agent_dir = self.home.run_dir / "agents" / validate_agent_name(last.worker)
        session = last_session(agent_dir)
        return (agent_dir, session) if session else None

    def with_skills(self, worker: str, env: dict[str, str]) -> dict[str, str]:
        """`env` plus SWARM_SKILLS: the worker's skills directory, filled from the hub now and kept in step with
        it while the worker runs (see `swarmd.skills`)."""
        target = skills_dir(self.home, worker, env)
        SkillHub(self.home).attach(worker, target)
        return {**env, "SWARM_SKILLS": str(target)}

    def prepare_agent(self, profile: Profile, task: Task, worker: str, workdir: Path, env: dict[str, str],
                      session_id: str, resume: tuple[Path, str] | None = None) -> dict[str, str]:
        """Write the agent CLI's own config for this worker (swarmd/agents/) and return the environment that
        points the CLI at it."""
        assert profile.agent is not None
        checks = tuple(c.run for c in (task.validation.checks if task.validation else []) if getattr(c, "run", None))
        return adapter(profile.agent).prepare(WorkerSetup(
            home=self.home.root, worker=worker, task=task.id, workdir=workdir,
            agent_dir=self.home.run_dir / "agents" / worker, env=env, checks=checks, allow=tuple(profile.allow),
            mode=profile.mode, session_id=session_id, resume=resume))

    @property
    def pane_died_file(self) -> Path:
        """Written by a worker pane's first process (its shell, or the fork server's client) as its last act,
        after the worker's exit file: a worker's end wakes the supervisor at once, which reads the exit files."""
        return self.home.run_dir / "pane-died"

    @property
    def pane_hook_file(self) -> Path:
        """Written by tmux's pane-died hook: a pane ended (a worker's pane killed before its last act, or another
        pane): the supervisor lists the panes."""
        return self.home.run_dir / "pane-hook"

    def exit_file(self, worker: str) -> Path:
        return self.home.run_dir / "exits" / worker

    def exit_status(self, worker: str) -> int | None:
        """The exit status the worker's shell recorded, if it got that far."""
        try:
            return int(self.exit_file(worker).read_text().strip())
        except (OSError, ValueError):
            return None

    def workdir_for(self, task: Task) -> Path:
        """Where the task's worker runs and its checks are made."""
        return self.workdir(task, self.profile(task.profile))

    def workdir(self, task: Task, profile: Profile) -> Path:
        """The task's workdir, else the profile's, else the project (swarm.toml's `project`, else the directory
        that holds the home); relative ones are taken from the project."""
        base = project_dir(self.home, self.config.project)
        chosen = task.workdir or profile.workdir
        path = (base / chosen) if chosen else base
        if not path.is_dir():
            raise ConfigError(f"working directory {path} of task {task.id} does not exist")
        return path

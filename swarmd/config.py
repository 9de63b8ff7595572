"""swarm.toml: the swarm's name, worker profiles, limits and timeouts."""

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal, get_args


from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from protocol.messages import describe_validation_error
from protocol.text import read_text
from swarmd.errors import ConfigError
from swarmd.git.settings import GitSettings
from swarmd.hosts.settings import HostsSettings


class Profile(BaseModel):
    """How to start one kind of worker. `command` is a template; placeholders are shell-quoted on use:
    {prompt_file} {task_id} {agent} {home} {python} {session_id} {claude_session}."""

    model_config = ConfigDict(extra="forbid")

    command: str = Field(min_length=1, description=(
        "The shell command that starts a worker. Placeholders, shell-quoted for you: `{prompt_file}` `{task_id}` "
        "`{agent}` `{home}` `{python}` `{session_id}` `{claude_session}`. `{python} -m swarmd.worker -- CMD` wraps an agent CLI (ACCEPTED, "
        "heartbeats, DONE/FAILED by its exit code); the first word after `--` must be on PATH when a plan loads."))
    env: dict[str, str] = Field(default={}, description="Environment variables set for the worker.")
    workdir: str | None = Field(default=None, description=(
        "Where the worker runs when its task names no `workdir` (relative to the project)."))
    agent: Literal["claude", "codex", "script"] | None = Field(default=None, description=(
        "The agent CLI the command starts. swarmd then gives each worker the CLI's own config directory under "
        "`run/agents/<worker>/` (`CLAUDE_CONFIG_DIR`, `CODEX_HOME`; the user's settings and login carried over, "
        "never changed), written before launch so that no onboarding, trust or API-key dialog shows, with "
        "hooks that report the agent's state and usage to the supervisor. `{session_id}` in `command` is a "
        "fresh session id per worker; `{claude_session}` is Claude Code's arguments for it: `--session-id ID`, or, "
        "for a successor after a CHECKPOINT, `--resume PREVIOUS --fork-session --session-id ID` (the predecessor's "
        "conversation goes on)."))
    mode: Literal["headless", "interactive"] = Field(default="headless", description=(
        "`headless`: the command runs the task to its end by itself (`claude -p`, `codex exec`). "
        "`interactive`: the agent's own interface runs in the pane and swarmd delivers the prompt into it."))
    allow: list[str] = Field(default=[], description=(
        "Commands, by their leading words (`\"pytest\"`, `\"npm test\"`), the agent may run without asking. "
        "Always allowed: the reporting commands (`agentmail send/read/list/ack`, also with `$SWARM_*` "
        "variables) and the task's check commands exactly as written. Edits inside the worker's directory "
        "follow the command's own mode (claude: `--permission-mode acceptEdits`; codex: its sandbox)."))
    setup: str | None = Field(default=None, description=(
        "A shell command run in each new worktree of this profile's attempts before its worker starts, after "
        "the project's `[git]` `setup` (the project's set-up first, then the agent's)."))
    teardown: str | None = Field(default=None, description=(
        "A shell command run in an attempt's worktree before it is removed, before the project's `[git]` "
        "`teardown` (in the reverse order of set-up)."))


NotifyEvent = Literal["needs_input", "question", "blocker_found", "task_failed", "task_blocked", "plan_done"]
NOTIFY_EVENTS: tuple[NotifyEvent, ...] = get_args(NotifyEvent)


class Notify(BaseModel):
    """`[notify]`: tell a person when the swarm needs one. Each notification is a JSON object (`event`,
    `worker`, `task`, `reason`, `action`, `summary`, `seq`, `ts`, `home`) given to `command` on its stdin and
    POSTed to `webhook`; a failure is tried again with backoff, then reported in the feed."""

    model_config = ConfigDict(extra="forbid")

    events: list[NotifyEvent] = Field(default=list(NOTIFY_EVENTS), description=(
        "What to notify about: `needs_input` (an agent waits on a dialog), `question` (a worker asked for help), "
        "`blocker_found`, `task_failed` (an attempt failed; another follows), `task_blocked` (attempts spent or "
        "held: it waits for `swarm retry`), `plan_done` (no task is open or running any more)."))
    command: str | None = Field(default=None, min_length=1, description=(
        "A shell command run for each notification with its JSON on stdin, e.g. `notify-send swarm \"$(jq -r "
        ".summary)\"` or `ntfy publish mytopic`; it must exit 0. Also in its environment: `SWARM_NOTIFY_EVENT`, "
        "`SWARM_NOTIFY_WORKER`, `SWARM_NOTIFY_TASK`."))
    webhook: str | None = Field(default=None, pattern=r"^https?://[^\s]+$", description=(
        "A URL to POST each notification's JSON to; any 2xx answer counts as delivered."))
    retries: int = Field(default=3, ge=0, le=10, description="Tries after the first before a failure is reported.")
    backoff: float = Field(default=1.0, gt=0, le=600, description=(
        "Seconds before the first retry; each retry waits twice as long as the one before."))
    timeout: float = Field(default=10.0, gt=0, le=300, description="Seconds one try (command or POST) may take.")


class Config(BaseModel):
    """swarm.toml: every setting is optional."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="swarm", pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$",
                      description="Prefix of the worker tmux sessions: `<name>-<worker>`.")
    project: str | None = Field(default=None, description=(
        "The directory the swarm works on: where workers run and checks are made when a task says nothing "
        "else (relative to the home). Unset: the directory that holds the home. `swarm init` writes it when "
        "the home is kept elsewhere ($SWARM_HOME or --home)."))
    max_workers: int = Field(default=4, ge=1, le=256, description="Workers running at once.")
    durable: bool = Field(default=True, description=(
        "fsync every message and ledger event (off: faster, may lose the last writes on power loss)."))
    transport: str = Field(default="files", description=(
        "Where Agent Mail travels: `\"files\"` (Maildir files under the home's `mail/`, for one machine) or "
        "`\"nats://HOST:PORT\"`, a NATS server with JetStream (a work-queue stream with a subject per mailbox, "
        "durable consumers, de-duplicated publishes retried until acknowledged), for workers on several "
        "machines. TLS is used whenever HOST is not loopback (or with `tls://`). Never put credentials in it."))
    transport_credentials: str | None = Field(default=None, description=(
        "A file (relative to the home) with the NATS login: one line `user:password`, an nkey seed (`SU...`) "
        "or a NATS `.creds` file. It must be mode 0600 (readable by you alone), or mail is refused."))
    transport_ca: str | None = Field(default=None, description=(
        "A PEM file (relative to the home) with the CA that signed the NATS server's TLS certificate; unset: "
        "the system's CAs."))
    heartbeat_interval: float = Field(default=5.0, gt=0, description="Seconds between worker heartbeats.")
    fork_server: bool = Field(default=True, description=(
        "Start workers through a warm fork server: a worker pane's first process hands its terminal to a "
        "process that has already loaded the worker wrapper, so a worker is up in milliseconds rather than "
        "after a fresh interpreter's start (off: each pane starts `python -m swarmd.worker` itself)."))
    warm_panes: int = Field(default=2, ge=0, le=64, description=(
        "With the fork server: worker panes kept started ahead of need, each pane's first process already "
        "waiting, so that a dispatch renames one for its worker instead of starting a session. Either way a "
        "pane whose worker exited 0 is used again (up to max_workers idle; those above this number end after "
        "30 s unused). 0: none started ahead."))
    stale_after: float = Field(default=300.0, gt=0, description=(
        "Seconds without a heartbeat before an agent counts as stale (and its attempt fails)."))
    task_timeout: float = Field(default=1800.0, gt=0, description=(
        "Seconds one attempt at a task may run (a task's own `timeout` wins)."))
    rate_limit_wait: float = Field(default=60.0, gt=0, description=(
        "Seconds an agent that hit a usage limit is paused when its notice gives no reset time; then it is "
        "told to continue."))
    max_attempts: int = Field(default=3, ge=1, description=(
        "Failed attempts before a task is blocked (a task's own `max_attempts` wins; `swarm retry` gives a "
        "fresh budget)."))
    max_checkpoints: int = Field(default=10, ge=0, description=(
        "Hand-overs by CHECKPOINT a task may use; past them a checkpoint counts as a failure."))
    shutdown_grace: float = Field(default=30.0, ge=0, description=(
        "Seconds a worker whose task is done (or checkpointed) has to exit after SHUTDOWN before its session "
        "is ended."))
    tick: float = Field(default=0.5, gt=0, le=10, description="Seconds between the supervisor's timer checks.")
    default_profile: str = Field(default="script", description="The profile used by tasks that name none.")
    helper_profile: str | None = Field(default=None, description=(
        "A profile to start a helper for each HELP_REQUEST; unset: questions go to the feed."))
    on_task_done: str | None = Field(default=None, description=(
        "A shell command run after a task is validated; its failure is logged, not fatal. `{task_id}` `{title}` "
        "`{agent}` `{home}` become `\"${SWARM_TASK_ID}\"` etc.: values are never read as shell code."))
    hook_timeout: float = Field(default=120.0, gt=0, description=(
        "Seconds `on_task_done` may run before its whole process group is killed."))
    keep_logs_days: float = Field(default=14.0, gt=0, description=(
        "Days an ended worker's log, prompt and exit status file are kept (`swarm clean --older-than` overrides)."))
    max_log_mb: float = Field(default=50.0, gt=0, description=(
        "A log (a worker's or the supervisor's) past this many MiB keeps only its newest half."))
    keep_mail_days: float = Field(default=7.0, gt=0, description=(
        "Days read mail (a mailbox's `cur/`) is kept; each mailbox keeps its newest read message."))
    max_mail_mb: float = Field(default=20.0, gt=0, description=(
        "MiB of read mail a mailbox keeps; past it the oldest goes first."))
    budget_tokens: int | None = Field(default=None, gt=0, description=(
        "Input plus output tokens the agents may use in all (from their own records, as `swarm stats` sums "
        "them); once spent, no new attempt starts (running ones finish). Unset: no limit."))
    budget_usd: float | None = Field(default=None, gt=0, description=(
        "The same in US dollars, as the agents record their cost (Claude Code does, at each session's end)."))
    notify: Notify = Field(default_factory=Notify, description=(
        "`[notify]`: a command and/or webhook told when a worker needs a person (see its table)."))
    git: GitSettings = Field(default_factory=GitSettings, description=(
        "`[git]`: isolation of attempts in worktrees and the merge queue (a plan's `[git]` overrides it)."))
    hosts: HostsSettings = Field(default_factory=HostsSettings, description=(
        "`[hosts]`: worker hosts on other machines, joined through NATS JetStream (`swarm host join`)."))
    profiles: dict[str, Profile] = Field(default_factory=lambda: dict(DEFAULT_PROFILES), description=(
        "Worker profiles by name (`[profiles.NAME]`); they add to the built-in `script`, `claude`, `claude-tui`, "
        "`codex` and `codex-tui` "
        "(or replace one of the same name)."))

    @field_validator("transport", mode="after")
    @classmethod
    def _transport_address(cls, transport: str) -> str:
        from agentmail.errors import TransportConfigError
        from agentmail.transportsettings import check_transport_url

        try:
            return check_transport_url(transport)
        except TransportConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("profiles", mode="after")
    @classmethod
    def _over_defaults(cls, profiles: dict[str, Profile]) -> dict[str, Profile]:
        """Profiles in swarm.toml add to the built-in ones (or replace one of the same name)."""
        return {**DEFAULT_PROFILES, **profiles}

    def git_for(self, task_metadata: dict[str, Any], profile: str | None) -> GitSettings:
        """The git settings of one task: `[git]`, its plan's `[git]` over it, and its profile's `setup` and
        `teardown` joined to theirs (a profile not defined adds nothing)."""
        settings = self.git.effective(task_metadata)
        chosen = self.profiles.get(profile or self.default_profile)
        if chosen is None or not (chosen.setup or chosen.teardown):
            return settings
        return settings.model_copy(update={"setup": _then(settings.setup, chosen.setup),
                                           "teardown": _then(chosen.teardown, settings.teardown)})

    @model_validator(mode="after")
    def _profiles_known(self) -> "Config":
        for label, name in (("default_profile", self.default_profile), ("helper_profile", self.helper_profile)):
            if name is not None and name not in self.profiles:
                raise ValueError(f"{label} {name!r} is not one of the profiles: {', '.join(sorted(self.profiles))}")
        return self


DEFAULT_PROFILES = {
    "script": Profile(command="{python} -m swarmd.worker --script"),
    # The prompt goes on the agent's stdin (`claude -p` and `codex exec -` read it there), never into argv.
    "claude": Profile(agent="claude", command="{python} -m swarmd.worker --prompt-stdin {prompt_file} -- "
                                              "claude -p --permission-mode acceptEdits {claude_session}"),
    # Claude Code's own interface in the pane (attach to watch or steer it); swarmd pastes the prompt into it.
    "claude-tui": Profile(agent="claude", mode="interactive", command="{python} -m swarmd.worker -- claude "
                                                                      "--permission-mode acceptEdits "
                                                                      "{claude_session}"),
    "codex": Profile(agent="codex", command="{python} -m swarmd.worker --prompt-stdin {prompt_file} -- "
                                            "codex exec --sandbox workspace-write --skip-git-repo-check "
                                            "--add-dir {home} -"),
    # Codex's own interface in the pane: commands run in its sandbox without asking (the swarm home writable for
    # the mail); no app-server daemon is left behind when the worker ends.
    "codex-tui": Profile(agent="codex", mode="interactive", command="{python} -m swarmd.worker -- codex --no-daemon "
                                                                    "-a never -s workspace-write --add-dir {home}"),
}

_PROJECT_LINE = '# project = "/path/to/repo" # where workers run by default; unset: the directory that holds this home\n'
DEFAULT_TOML = """\
# swarmd configuration. Every setting is optional; the values below are the defaults.

name = "swarm"              # prefix of worker tmux sessions: <name>-<worker>
# project = "/path/to/repo" # where workers run by default; unset: the directory that holds this home
max_workers = 4             # workers running at once
durable = true              # fsync every message and ledger event (off: faster, may lose the last writes on power loss)
heartbeat_interval = 5.0    # seconds between worker heartbeats
fork_server = true          # start workers by forking a warm process (off: a fresh interpreter per pane)
warm_panes = 2              # with the fork server: panes started ahead of need (a pane whose worker exited 0 is reused)
stale_after = 300.0         # seconds without a heartbeat before an agent counts as stale
task_timeout = 1800.0       # seconds one attempt at a task may run (a task's own `timeout` wins)
rate_limit_wait = 60.0      # seconds a worker is paused at a usage limit whose reset time is unknown
max_attempts = 3            # attempts before a task is blocked (a task's own `max_attempts` wins)
max_checkpoints = 10        # hand-overs by CHECKPOINT a task may use; past them a checkpoint counts as a failure
shutdown_grace = 30.0       # seconds a worker whose task is done (or checkpointed) has to exit after SHUTDOWN
tick = 0.5                  # seconds between the supervisor's timer checks
default_profile = "script"  # the profile used by tasks that name none
# helper_profile = "claude" # a profile to start a helper for each HELP_REQUEST; unset: questions go to the feed
# on_task_done = "gh issue close {task_id}"   # runs after a task is validated; its failure is logged, not fatal.
#   {task_id} {title} {agent} {home} become "${SWARM_TASK_ID}" etc.: values are never read as shell code
hook_timeout = 120.0        # seconds on_task_done may run before its whole process group is killed
# Retention (the supervisor applies it at most once a minute; `swarm clean` applies it by hand):
keep_logs_days = 14.0       # an ended worker's log and prompt are removed once this old
max_log_mb = 50.0           # a log (a worker's or the supervisor's) past this size keeps only its newest half
keep_mail_days = 7.0        # read mail (a mailbox's cur/) is removed once this old
max_mail_mb = 20.0          # and the oldest read mail goes while a mailbox's cur/ is bigger than this
# budget_tokens = 5000000   # input + output tokens the agents may use in all; once spent no new attempt starts
# budget_usd = 20.0         # the same in US dollars, as the agents record their cost

# A profile starts one worker. Placeholders (shell-quoted for you): {prompt_file} {task_id} {agent} {home} {python}
# {session_id} {claude_session} (claude's `--session-id ID`, or `--resume` of the predecessor after a CHECKPOINT).
# The task's text is in the prompt file, never on the command line: give the agent the file's path, or its
# content on stdin with `--prompt-stdin {prompt_file}` (never "$(cat {prompt_file})": any local user reads
# argv, and more than 128 KiB does not fit in it).
[profiles.script]
command = "{python} -m swarmd.worker --script"   # runs the task's description as a shell script

# `swarm worker run --` wraps any agent: ACCEPTED at start, heartbeats, DONE/FAILED by its exit code (and a DONE
# is only believed once the task's validation passes). An agent may also send its own mail (see the prompt).
# `agent` gives each worker the CLI's own config directory, written before launch (no dialogs; hooks report its
# state and usage). It may run the reporting commands, the task's checks and `allow`'s commands unasked.
[profiles.claude]
agent = "claude"
command = "{python} -m swarmd.worker --prompt-stdin {prompt_file} -- claude -p --permission-mode acceptEdits {claude_session}"
# env = { ANTHROPIC_MODEL = "..." }
# workdir = "."
# allow = ["pytest", "npm test"]

[profiles.claude-tui]   # Claude Code's own interface in the pane: attach to watch or steer; swarmd pastes the prompt
agent = "claude"
mode = "interactive"
command = "{python} -m swarmd.worker -- claude --permission-mode acceptEdits {claude_session}"

[profiles.codex]   # `codex exec` never asks for approval; `-` reads the prompt from stdin
agent = "codex"
command = "{python} -m swarmd.worker --prompt-stdin {prompt_file} -- codex exec --sandbox workspace-write --skip-git-repo-check --add-dir {home} -"

[profiles.codex-tui]   # Codex's own interface in the pane; commands run in its sandbox unasked; no daemon left behind
agent = "codex"
mode = "interactive"
command = "{python} -m swarmd.worker -- codex --no-daemon -a never -s workspace-write --add-dir {home}"

# Tell a person when the swarm needs one: the event's JSON (event, worker, task, reason, action) goes to the
# command's stdin and/or is POSTed to the webhook; failures are retried with backoff, then put in the feed.
# [notify]
# events = ["needs_input", "question", "blocker_found", "task_failed", "task_blocked", "plan_done"]
# command = "ntfy publish my-swarm"
# webhook = "https://example.com/hooks/swarm"

# Git (a plan's own [git] table overrides these for its tasks; see docs/reference.md):
# [git]
# isolation = "auto"        # "worktree": each attempt in its own worktree and branch swarm/<plan>/<task>;
#                           # "none": one shared directory; "auto": worktree when the task's directory is in a repo
# integration = "release"   # where validated work lands (default swarm/<plan>/_integration); yours never move
# checks = [ { kind = "tests", run = "pytest -q" } ]   # the merge queue's gate, on the merged result
# include = [".env"]        # untracked files copied into each worktree (and those in .worktreeinclude)
# setup = "npm ci"          # run in each new worktree before its worker starts
# strategy = "merge"        # or "rebase": how a branch goes onto the integration tip
# reservations = "warn"     # or "refuse": a worker's commit touching another's exclusive file reservation
"""


def load_config(path: Path) -> Config:
    """Read swarm.toml; a missing file gives the defaults. Errors name the file and the field."""
    if not path.exists():
        return Config()
    try:
        data = tomllib.loads(read_text(path))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_validation_error(exc).removeprefix('invalid message: ')}") from None


def write_default_config(path: Path, project: Path | None = None) -> bool:
    """Write the commented defaults (with `project` set when given) unless a config exists; True if written."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return False
    text = DEFAULT_TOML
    if project is not None:
        text = text.replace(_PROJECT_LINE, f"project = {json.dumps(str(project.absolute()))}"
                                          f"  # where workers run by default (swarm init was run for it)\n")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return True


def _then(first: str | None, second: str | None) -> str | None:
    """Two shell commands run one after the other, the second only if the first succeeded (either may be None);
    each in a subshell of its own lines, so a trailing comment in one cannot swallow the other."""
    if not (first and second):
        return first or second
    return f"(\n{first}\n) && (\n{second}\n)"

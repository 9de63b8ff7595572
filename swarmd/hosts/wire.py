"""What the supervisor and its hosts say to each other over NATS, and where.

- Orders: the supervisor publishes `Order`s on `swarm.<swarm>.orders.<host>`, kept in the work-queue stream
  `SWARM_<swarm>_ORDERS` until that host's durable consumer (`host-<host>`) acks them.
- Events: a host publishes `HostEvent`s (a worker started, a worker's mail, a pane's end, a stop done) on
  `swarm.<swarm>.events.<host>`, kept in the work-queue stream `SWARM_<swarm>_EVENTS` until the supervisor's
  durable consumer acks them. Each carries the attempt number it speaks for and the id of the start order that
  started that attempt: together the fencing token by which the supervisor refuses what a host it has given up
  on says late, even for a previous start of the same attempt number (an order sent again, another swarm's).
- Heartbeats: each host puts its `HostBeat` under its name in the key-value bucket `swarm_<swarm>_hosts`,
  whose keys expire `ttl` seconds after their last put (the bucket's max age): a missing key is a host down.
- Requests: `swarm.<swarm>.rpc.<host>` answers `RpcRequest`s at once (a worker's log), core NATS request/reply.
- Replies (JetStream's acknowledgements and answers, a pull consumer's deliveries) come to inboxes under a prefix of
  each side's own, `_INBOX_<swarm>.host.<host>` and `_INBOX_<swarm>.supervisor`: a host's login may listen there
  and nowhere else but its requests subject (`swarmd.hosts.permissions`).
- Terminals (`swarm attach` through the host agent; core NATS, nothing stored): the operator picks a terminal id
  `<sid>`, subscribes to `swarm.<swarm>.term.<host>.<sid>.out`, then sends an `AttachRequest` to
  `swarm.<swarm>.term.<host>.open` (request/reply; the answer is an `RpcReply`). Before it answers ok, the host
  subscribes to `.in` and starts `tmux -S <its socket> attach-session -t =<session>` in a pty sized
  `rows` x `cols`. Then, each direction one subject (so each stays in order):
    `swarm.<swarm>.term.<host>.<sid>.in`   operator -> host: the bytes typed, as they are
    `swarm.<swarm>.term.<host>.<sid>.out`  host -> operator: the bytes the tmux client drew, as they are
  A message with the header `Swarm-Term` is a control message instead, its body JSON: `size` (a `TermSize`: the
  operator's window changed; operator -> host) or `end` (a `TermEnd`, the last message either way: the tmux client
  exited, detached or its session ended; or the operator went away). An empty message without the header is a
  keepalive, sent every `TERM_KEEPALIVE` s by each side: a side that hears nothing from the other for `TERM_LOST`
  s ends the relay (an operator's terminal killed, a host agent gone). The worker's pane is never touched: only
  the tmux client the host started for the relay ends. Core NATS may drop messages for a slow reader: a terminal
  shows the next redraw (tmux redraws the whole screen on a resize).

Every JetStream publish carries a message id (`Nats-Msg-Id`): a send retried after a lost acknowledgement is stored once.
"""

import re
from datetime import datetime
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter

from protocol.ids import utcnow
from protocol.base import AgentName
from swarmd.git.repo import valid_branch
from swarmd.hosts.names import SSH_DESTINATION_RE, HostError, validate_host_name, validate_swarm_name


WIRE_VERSION = 1
TERM_ID = re.compile(r"[a-z0-9]{8,40}")  # a terminal relay's session id


class Layout:
    """The stream, consumer, bucket and subject names of one swarm (`swarm`: swarm.toml's `name`)."""

    def __init__(self, swarm: str) -> None:
        self.swarm = validate_swarm_name(swarm)
        self.orders_stream = f"SWARM_{swarm}_ORDERS"
        self.events_stream = f"SWARM_{swarm}_EVENTS"
        self.bucket = f"swarm_{swarm}_hosts"
        self.supervisor_consumer = "supervisor"
        self.bucket_stream = f"KV_{self.bucket}"  # the stream under the bucket (JetStream's naming)
        self.supervisor_inbox = f"_INBOX_{swarm}.supervisor"

    def orders(self, host: str) -> str:
        return f"swarm.{self.swarm}.orders.{validate_host_name(host)}"

    def events(self, host: str) -> str:
        return f"swarm.{self.swarm}.events.{validate_host_name(host)}"

    def rpc(self, host: str) -> str:
        return f"swarm.{self.swarm}.rpc.{validate_host_name(host)}"

    def term_open(self, host: str) -> str:
        return f"swarm.{self.swarm}.term.{validate_host_name(host)}.open"

    def term(self, host: str, sid: str, channel: Literal["in", "out"]) -> str:
        """The subject of one channel of terminal relay `sid` (HostError for a malformed id)."""
        if not TERM_ID.fullmatch(sid):
            raise HostError(f"invalid terminal id {sid!r}")
        return f"swarm.{self.swarm}.term.{validate_host_name(host)}.{sid}.{channel}"

    def terms(self, channel: Literal["open", "in", "out"], host: str | None = None) -> str:
        """The subjects of `channel` of every terminal relay of `host` (None: of every host), with wildcards: for
        the logins' permissions (`swarmd.hosts.permissions`)."""
        where = validate_host_name(host) if host is not None else "*"
        return f"swarm.{self.swarm}.term.{where}.open" if channel == "open" else \
            f"swarm.{self.swarm}.term.{where}.*.{channel}"

    def host_consumer(self, host: str) -> str:
        return f"host-{validate_host_name(host)}"

    def host_key(self, host: str) -> str:
        """The subject a put of `host`'s heartbeat key is published on."""
        return f"$KV.{self.bucket}.{validate_host_name(host)}"

    def host_inbox(self, host: str) -> str:
        """The prefix of `host`'s reply inboxes (nats-py's `inbox_prefix`)."""
        return f"_INBOX_{self.swarm}.host.{validate_host_name(host)}"

    @property
    def all_orders(self) -> str:
        return f"swarm.{self.swarm}.orders.*"

    @property
    def all_events(self) -> str:
        return f"swarm.{self.swarm}.events.*"

    def host_of(self, subject: str) -> str:
        """The host an events subject names (HostError for a malformed one)."""
        return validate_host_name(subject.rsplit(".", 1)[-1])


def _host_name(name: str) -> str:
    """A host name for a model field: a ValueError (pydantic's) for a bad one."""
    try:
        return validate_host_name(name)
    except HostError as exc:
        raise ValueError(str(exc)) from None


HostName = Annotated[str, AfterValidator(_host_name)]
COMMIT = r"^[0-9a-f]{40,64}$"  # a full object name (SHA-1 or SHA-256)


def _branch_name(name: str) -> str:
    if not valid_branch(name):
        raise ValueError(f"not a branch name: {name[:80]!r}")
    return name


def _inside(subdir: str) -> str:
    """A directory inside a repository: relative, and never leaving it."""
    if PurePosixPath(subdir).is_absolute() or ".." in PurePosixPath(subdir).parts:
        raise ValueError(f"not a directory inside the repository: {subdir[:80]!r}")
    return subdir


class Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")  # a newer peer may add fields


class TreeOrder(Wire):
    """The git worktree an attempt works in on its host (see `swarmd.hosts.bundles`): `bundle` names the object in
    the swarm's bundle bucket that brings the `base` commit (empty: the host holds it already); the branch and
    worktree are made from `base` as the supervisor names them (`plan`, `integration`); `subdir` is the task's
    directory in the repository; `setup` and `teardown` the `[git]` commands run in the worktree."""

    bundle: str = ""
    base: str = Field(pattern=COMMIT)
    plan: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    integration: Annotated[str, AfterValidator(_branch_name)]
    subdir: Annotated[str, AfterValidator(_inside)] = ""
    setup: str | None = None
    teardown: str | None = None


class StartOrder(Wire):
    """Start `worker` for `attempt` of `task` (a `protocol.task.Task` as JSON) with `profile` (a
    `swarmd.config.Profile` as JSON); in the worktree `git` describes, when the attempt is isolated."""

    kind: Literal["start"] = "start"
    id: str
    worker: AgentName
    attempt: int
    max_attempts: int
    task: dict[str, Any]
    profile: dict[str, Any]
    heartbeat_interval: float
    durable: bool
    git: TreeOrder | None = None


class StopOrder(Wire):
    """End `worker` (its `attempt`): with `grace` > 0 it gets SHUTDOWN mail (`reason`) and that many seconds to
    exit by itself first; a dead pane is kept for a post-mortem unless `remove`. `home_tip`: the commit of the
    attempt's branch the supervisor holds (the host's branch goes with its worktree when it is at that commit)."""

    kind: Literal["stop"] = "stop"
    id: str
    worker: AgentName
    attempt: int
    reason: str = ""
    grace: float = 0.0
    remove: bool = False
    home_tip: str = ""


class MailOrder(Wire):
    """Deliver `message` (an Agent Mail message as JSON) into `worker`'s mailbox on the host."""

    kind: Literal["mail"] = "mail"
    id: str
    worker: AgentName
    attempt: int
    message: dict[str, Any]


Order = StartOrder | StopOrder | MailOrder


class HostEvent(Wire):
    """What a host reports about one worker's attempt.

    `kind`: `started` (`pid`), `start_failed` (`error`), `mail` (`message`: a mail the worker sent the supervisor),
    `ended` (its pane ended: `exit_status` or `signal`, and the log's `tail`; `lapsed` when the host ended it because
    its lease lapsed, see `swarmd.hosts.lease`), `stopped` (a stop order done). The mail of a DONE or CHECKPOINT
    from a worker in a worktree carries its branch: `tip`, the commit it is at, and `bundle`, the object that
    brings it (empty when `tip` is the base), or `git_error` when the host could not bundle it."""

    kind: Literal["started", "start_failed", "mail", "ended", "stopped"]
    id: str
    host: HostName
    worker: AgentName
    attempt: int
    pid: int | None = None
    error: str = ""
    message: dict[str, Any] | None = None
    exit_status: int | None = None
    signal: int | None = None
    tail: str = ""
    lapsed: bool = False
    tmux: str = ""  # started: the socket of the host's tmux server (for `ssh HOST tmux -S ... attach`)
    bundle: str = ""
    tip: str = Field(default="", pattern=r"^([0-9a-f]{40,64})?$")
    git_error: str = ""
    start: str = ""  # the id of the StartOrder that started this attempt ("": none known, e.g. a stop of a stranger)


TERM_CONTROL = "Swarm-Term"  # the header that makes a terminal relay's message a control message (its value: kind)
TERM_KEEPALIVE = 5.0  # seconds between a terminal relay's keepalives (empty `in` / `out` messages)
TERM_LOST = 20.0  # seconds without a word from the other side after which a terminal relay ends


class AttachRequest(Wire):
    """Open a terminal on `worker`'s tmux session: relayed on `term.<host>.<term>.in` / `.out`, sized `rows` x `cols`,
    for a terminal of type `term_type` (the operator's $TERM)."""

    worker: AgentName
    term: str = Field(pattern=f"^{TERM_ID.pattern}$")
    rows: int = Field(ge=1, le=1000)
    cols: int = Field(ge=1, le=1000)
    term_type: str = Field(default="xterm-256color", pattern=r"^[A-Za-z0-9._+-]{1,64}$")


class TermSize(Wire):
    """The operator's terminal's size now, in character cells."""

    rows: int = Field(ge=1, le=1000)
    cols: int = Field(ge=1, le=1000)


class TermEnd(Wire):
    """A terminal relay is over: `reason` (`detached`: the tmux client exited, `closed`: the operator left,
    `lost`: the other side went silent), and the tmux client's exit `status` when it has one."""

    reason: str
    status: int | None = None


class HostBeat(Wire):
    """A host's heartbeat, the value of its key: what it offers and which workers it runs (worker -> attempt)."""

    v: int = WIRE_VERSION
    name: HostName
    slots: int = Field(ge=1)
    labels: list[str] = []
    pid: int
    ssh: str = Field(default="", pattern=f"^({SSH_DESTINATION_RE.pattern})?$")  # how the supervisor's machine
    # reaches this host by ssh (`user@machine`, for `swarm attach`), "" when it does not
    started: datetime
    ts: datetime = Field(default_factory=utcnow)
    workers: dict[str, int] = {}
    worker_beats: dict[str, datetime | None] | None = None  # worker -> its last heartbeat (this host's clock; only
    # a change means anything); None from a host that does not forward them


class RpcRequest(Wire):
    """A request to a host: `logs` (bytes of `worker`'s log from `offset`, at most `limit`)."""

    op: Literal["logs"]
    worker: AgentName
    offset: int = 0
    limit: int = 65536


class RpcReply(Wire):
    ok: bool
    error: str = ""
    data: str = ""
    offset: int = 0  # where the next read starts
    running: bool = False  # the worker's pane still runs


_ORDER: TypeAdapter[Order] = TypeAdapter(Annotated[Order, Field(discriminator="kind")])


def parse_order(data: bytes) -> Order:
    """An order from its JSON (pydantic's ValidationError for anything else)."""
    return _ORDER.validate_json(data)

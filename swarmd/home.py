"""The swarm home: one directory that holds a swarm's config, mail, ledger, logs and runtime files."""

import os
import stat
from pathlib import Path
from typing import NamedTuple

from agentmail.locate import HOME_DIR_NAME, NO_HOME, explicit_home, find_home_upward
from swarmd.errors import HomeError

DEFAULT_HOME = HOME_DIR_NAME
# A unix socket path must fit in sun_path: 108 bytes on Linux, with the NUL. Bytes, not characters: a
# home under a path of non-ASCII letters is twice (or more) as long in bytes as it looks.
MAX_SOCKET_PATH_BYTES = 100
# Where the socket goes when the home's own path is too long: a fixed, short directory (like tmux's own
# default, /tmp/tmux-<uid>), never one read from the environment, so that every process (the supervisor,
# a CLI started from another shell with another TMPDIR) finds the same socket, and it always fits.
SOCKET_FALLBACK_DIR = "/tmp"


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """`home`, else $SWARM_HOME, else the nearest `.swarm/` in the current directory or a parent (as git finds
    `.git`); made absolute. Raises HomeError when none is named and none is found."""
    found = explicit_home(home) or find_home_upward()
    if found is None:
        raise HomeError(NO_HOME)
    return found


def home_to_create(home: str | os.PathLike[str] | None = None) -> Path:
    """Where `swarm init` makes a home: `home`, else $SWARM_HOME, else ./.swarm (like `git init`, never a parent's)."""
    return explicit_home(home) or Path.cwd().absolute() / DEFAULT_HOME


def make_private_dir(path: Path) -> None:
    """Create `path` (0700) and refuse it if it is a symlink or not a directory."""
    if path.is_symlink():
        raise HomeError(f"{path} is a symbolic link: refusing to use it; remove the link and try again")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise HomeError(f"{path} exists and is not a directory")
    if st.st_uid != os.getuid():
        raise HomeError(f"{path} belongs to another user (uid {st.st_uid}): refusing to use it")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)


class SwarmHome(NamedTuple):
    """A swarm home by its root directory, and the paths inside it. (A named tuple, not a dataclass: every
    worker pane builds one, and `dataclasses` imports `inspect`.)"""

    root: Path

    @classmethod
    def at(cls, home: str | os.PathLike[str] | None = None) -> "SwarmHome":
        return cls(resolve_home(home))

    @property
    def config_file(self) -> Path:
        return self.root / "swarm.toml"

    @property
    def mail_dir(self) -> Path:
        return self.root / "mail"

    @property
    def ledger_dir(self) -> Path:
        return self.root / "ledger"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def prompts_dir(self) -> Path:
        return self.root / "prompts"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "supervisor.pid"

    @property
    def tmux_socket(self) -> Path:
        """The swarm's private tmux socket: `run/tmux.sock` when its path fits in MAX_SOCKET_PATH_BYTES bytes,
        else `/tmp/swarmd-<uid>/<16 hex digits of the home's hash>.sock` (at most 45 bytes: it always fits)."""
        inside = self.run_dir / "tmux.sock"
        if len(os.fsencode(inside)) <= MAX_SOCKET_PATH_BYTES:
            return inside
        import hashlib  # here: only a long home path needs it, and a worker's start-up should not pay for it

        digest = hashlib.sha256(os.fsencode(self.root)).hexdigest()[:16]
        return Path(SOCKET_FALLBACK_DIR) / f"swarmd-{os.getuid()}" / f"{digest}.sock"

    def exists(self) -> bool:
        return self.config_file.exists()

    def ensure_dirs(self) -> None:
        """Create the home's directories, private to the user; refuse a home that cannot be written."""
        make_private_dir(self.root)
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise HomeError(f"swarm home {self.root} is not writable: choose another --home or fix its permissions")
        for path in (self.mail_dir, self.ledger_dir, self.logs_dir, self.run_dir, self.run_dir / "exits",
                     self.prompts_dir, self.tmux_socket.parent):
            make_private_dir(path)


def init_home(home: SwarmHome, project: Path | None = None) -> bool:
    """Create the home, its commented swarm.toml, a .gitignore that keeps the whole home out of git, and the
    mailboxes of the supervisor and the operator (so workers can report before the supervisor first starts).

    `project` is the directory the swarm works on (where workers run by default); it is written to a new
    swarm.toml unless it is the home's parent, which is the default. Safe to run again; True if swarm.toml was new.
    """
    from agentmail import PostOffice  # here, not at the top: agentmail is a layer above the home's paths
    from swarmd.config import write_default_config

    home.ensure_dirs()
    write_gitignore(home)
    recorded = project if project is not None and project.absolute() != home.root.parent else None
    created = write_default_config(home.config_file, project=recorded)
    post = PostOffice(home.root)
    post.register("supervisor", role="supervisor")
    post.register("operator", role="operator")
    return created



def write_gitignore(home: SwarmHome) -> None:
    """`<home>/.gitignore` ignoring everything (itself too): an agent's `git add -A` never commits the ledger,
    the mail or the pid file. An existing file is left as it is."""
    try:
        fd = os.open(home.root / ".gitignore", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as f:
        f.write("# a swarm home: never commit it\n*\n")


def project_dir(home: SwarmHome, project: str | None) -> Path:
    """The directory the swarm works on: `project` from swarm.toml (relative to the home), else the home's parent."""
    return (home.root / Path(project).expanduser()).absolute() if project else home.root.parent

"""Finding the swarm home as git finds `.git`: an explicit path wins, else $SWARM_HOME, else the first `.swarm/`
in the current directory or one of its parents.

Here, not in swarmd, so that both `agentmail` and `swarm` use the same walk (swarmd builds on agentmail).
"""

import os
import tomllib
from pathlib import Path

from agentmail.errors import MailError

HOME_DIR_NAME = ".swarm"
NO_HOME = "no swarm home here or in any parent: run `swarm init`"


class NoHome(MailError):
    """No home was named and no `.swarm/` was found in the current directory or its parents."""


def find_home_upward(start: Path | None = None) -> Path | None:
    """The first `<dir>/.swarm` that is a directory (not a symlink to one), from `start` (default: the current
    directory) up to the root; None if there is none."""
    here = (start or Path.cwd()).absolute()
    for directory in (here, *here.parents):
        candidate = directory / HOME_DIR_NAME
        if candidate.is_dir() and not candidate.is_symlink():
            return candidate
    return None


def explicit_home(home: str | os.PathLike[str] | None = None) -> Path | None:
    """`home` if given, else $SWARM_HOME if set, made absolute (`~` expanded); None if neither names one."""
    chosen = home or os.environ.get("SWARM_HOME")
    return Path(chosen).expanduser().absolute() if chosen else None


def locate_home(home: str | os.PathLike[str] | None = None, start: Path | None = None) -> Path:
    """The home to use: `home`, else $SWARM_HOME, else the nearest `.swarm/` upward. Raises NoHome if none."""
    found = explicit_home(home) or find_home_upward(start)
    if found is None:
        raise NoHome(NO_HOME)
    return found


def uses_files(home: Path) -> bool:
    """Whether the home's mail travels as files: $SWARM_TRANSPORT as the supervisor set it ("files" or
    "nats"), else swarm.toml's `transport` (missing or "files"); an unreadable swarm.toml says no (the full
    path then reads it and names what is wrong)."""
    chosen = os.environ.get("SWARM_TRANSPORT")
    if chosen:
        return chosen == "files"
    try:
        with open(f"{home}/swarm.toml", "rb") as handle:
            return tomllib.load(handle).get("transport", "files") == "files"
    except FileNotFoundError:
        return True
    except (OSError, ValueError, RecursionError):
        return False

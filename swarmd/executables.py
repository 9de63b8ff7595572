"""The programs that worker profiles start, and whether they can be found: a plan whose profile's program is
missing is refused when it loads, before any attempt is spent on it."""

import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from swarmd.config import Config, Profile

_SHOWN_TASKS = 3


def profile_program(profile: Profile) -> str | None:
    """The program `profile` starts: the first word after the worker wrapper's `--` (`{python} -m swarmd.worker
    -- claude ...` starts `claude`), else the command's first word (`{python}` is this interpreter). Leading
    `VAR=value` words are skipped. None when it cannot be told without a shell (`$CMD`, another placeholder)."""
    try:
        words = shlex.split(profile.command)
    except ValueError:
        return None
    if "--" in words:
        words = words[words.index("--") + 1:]
    while words and _is_assignment(words[0]):
        words = words[1:]
    if not words:
        return None
    first = words[0]
    if first == "{python}":
        return sys.executable
    return None if any(c in first for c in "{$`") else first


def _is_assignment(word: str) -> bool:
    name, sep, _ = word.partition("=")
    return bool(sep) and name.isidentifier()


def find_program(program: str) -> str | None:
    """The path of `program` as a worker's shell will find it: this interpreter's directory first (the spawner
    puts it at the front of PATH), then $PATH. None if it is not there or not executable."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])
    return shutil.which(program, path=search)


@dataclass(frozen=True)
class MissingProgram:
    """A profile whose program cannot be found, and the tasks (ids) that would use it."""

    profile: str
    program: str
    tasks: tuple[str, ...]

    def __str__(self) -> str:
        shown = ", ".join(repr(t) for t in self.tasks[:_SHOWN_TASKS])
        more = f" and {len(self.tasks) - _SHOWN_TASKS} more" if len(self.tasks) > _SHOWN_TASKS else ""
        which = "task" if len(self.tasks) == 1 else "tasks"
        return (f"profile {self.profile!r} (used by {which} {shown}{more}) starts `{self.program}`, which is not on "
                f"PATH: install it, or change [profiles.{self.profile}] in swarm.toml")


def missing_programs(uses: dict[str, list[str]], config: Config) -> list[MissingProgram]:
    """For `uses` (profile name -> the task ids using it), each known profile whose program is not found."""
    missing = []
    for name, task_ids in sorted(uses.items()):
        profile = config.profiles.get(name)
        program = profile_program(profile) if profile else None
        if program and find_program(program) is None:
            missing.append(MissingProgram(name, program, tuple(task_ids)))
    return missing

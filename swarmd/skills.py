"""The skills hub (the Vers skill's SkillHub): skills kept in the home and mirrored into every worker.

A skill is a folder with a `SKILL.md` (and any files beside it), kept in `<home>/skills/<name>/`. Each
worker has a skills directory its agent reads (Claude: `$CLAUDE_CONFIG_DIR/skills/_hub/`; Codex:
`$CODEX_HOME/skills/_hub/`; any other worker: `<home>/run/skills/<worker>/`, named by `$SWARM_SKILLS`), filled
at spawn and recorded in `<home>/run/skill-targets/<worker>`. Every change to the hub bumps
`<home>/skills/.version`; the supervisor watches that file and mirrors the hub into each live worker's
directory again (`sync_live`), so a skill added mid-run reaches running workers without a restart.
"""

import os
import shutil
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from protocol.ids import new_id
from protocol.names import AGENT_NAME_RE, validate_agent_name
from swarmd.errors import SwarmError
from swarmd.home import SwarmHome, make_private_dir

SKILL_FILE = "SKILL.md"
HUB_DIR = "_hub"  # the folder of an agent's skills directory that the hub owns
MAX_FILES = 1000
MAX_BYTES = 10 << 20
STUB = "---\nname: {name}\ndescription: what this skill is for and when to use it\n---\n\n# {name}\n"


class SkillError(SwarmError):
    """A skill that cannot be added, found or mirrored."""


@dataclass(frozen=True)
class Skill:
    name: str
    description: str
    files: int
    bytes: int


def skill_name(name: str) -> str:
    """`name` if it is a safe skill name (the rule of agent names), else SkillError."""
    if not AGENT_NAME_RE.fullmatch(name or "") or name in {".", ".."}:
        raise SkillError(f"invalid skill name {name[:80]!r}: use 1-64 characters of a-z, 0-9, '.', '_', '-'")
    return name


def skills_dir(home: SwarmHome, worker: str, env: Mapping[str, str]) -> Path:
    """Where worker `worker`'s agent reads the hub's skills, by the config directory its environment names."""
    for variable in ("CLAUDE_CONFIG_DIR", "CODEX_HOME"):
        if env.get(variable):
            return Path(env[variable]) / "skills" / HUB_DIR
    return home.run_dir / "skills" / validate_agent_name(worker)


class SkillHub:
    """The hub of one swarm home. Every method raises SkillError (one line) for a refusal."""

    def __init__(self, home: SwarmHome) -> None:
        self.home = home
        self.root = home.root / "skills"
        self.version_file = self.root / ".version"
        self.targets = home.run_dir / "skill-targets"

    # -- the hub ------------------------------------------------------------------------------------------------

    def add(self, source: Path | None, name: str | None = None) -> Skill:
        """Copy folder `source` (with a SKILL.md; no symlinks, at most MAX_FILES files and MAX_BYTES) into the
        hub as `name` (default: the folder's name), replacing a skill of that name; without `source`, a new
        skill with a stub SKILL.md to fill in."""
        if source is None and name is None:
            raise SkillError("give a skill folder (with a SKILL.md) or --name for a new one")
        name = skill_name(name or source.resolve().name)  # type: ignore[union-attr]
        make_private_dir(self.root)
        staged = self.root / f".new-{new_id()}"
        try:
            if source is None:
                make_private_dir(staged)
                _write_private(staged / SKILL_FILE, STUB.format(name=name))
            else:
                _check_source(source)
                _copy_private(source, staged)
            _replace_dir(staged, self.root / name)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
        self._bump()
        return self.get(name)

    def remove(self, name: str) -> None:
        path = self.root / skill_name(name)
        if not (path / SKILL_FILE).is_file():
            raise SkillError(f"no skill {name!r} in the hub: see `swarm skills list`")
        _replace_dir(None, path)
        self._bump()

    def get(self, name: str) -> Skill:
        path = self.root / skill_name(name)
        if not (path / SKILL_FILE).is_file():
            raise SkillError(f"no skill {name!r} in the hub: see `swarm skills list`")
        files = [p for p in path.rglob("*") if p.is_file()]
        return Skill(name, _description(path / SKILL_FILE), len(files), sum(p.stat().st_size for p in files))

    def skills(self) -> list[Skill]:
        if not self.root.is_dir():
            return []
        return [self.get(p.name) for p in sorted(self.root.iterdir())
                if not p.name.startswith(".") and (p / SKILL_FILE).is_file()]

    def version(self) -> str:
        try:
            return self.version_file.read_text().strip()
        except OSError:
            return ""

    def _bump(self) -> None:
        tmp = self.root / f".version-{new_id()}"
        _write_private(tmp, new_id())
        os.replace(tmp, self.version_file)

    # -- the workers' copies -----------------------------------------------------------------------------------

    def attach(self, worker: str, target: Path) -> None:
        """Record `target` as worker's skills directory and fill it now (at spawn)."""
        make_private_dir(self.targets)
        record = self.targets / validate_agent_name(worker)
        tmp = record.with_name(f".{record.name}.{new_id()}")
        _write_private(tmp, str(target))
        os.replace(tmp, record)
        self.mirror(target)

    def mirror(self, target: Path) -> None:
        """Make `target` hold exactly the hub's skills: each changed one replaced whole, removed ones removed."""
        for directory in [*reversed(target.parents), target]:
            if not directory.exists():
                make_private_dir(directory)
        wanted = {s.name for s in self.skills()}
        for name in wanted:
            if _tree(self.root / name) != _tree(target / name):
                staged = target / f".new-{new_id()}"
                try:
                    _copy_private(self.root / name, staged)
                    _replace_dir(staged, target / name)
                finally:
                    shutil.rmtree(staged, ignore_errors=True)
        for path in target.iterdir():
            if path.name not in wanted and not path.name.startswith(".") and path.is_dir():
                _replace_dir(None, path)

    def sync_live(self, workers: Iterable[str]) -> list[str]:
        """Mirror the hub into the skills directory recorded for each of `workers`; returns those mirrored."""
        done = []
        for worker in workers:
            try:
                target = Path((self.targets / validate_agent_name(worker)).read_text().strip())
            except OSError:
                continue
            self.mirror(target)
            done.append(worker)
        return done


def _check_source(source: Path) -> None:
    if not (source / SKILL_FILE).is_file():
        raise SkillError(f"{source} is not a skill: it has no {SKILL_FILE}")
    files = total = 0
    for path in source.rglob("*"):
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            raise SkillError(f"{path} is a symbolic link: a skill is copied as plain files only")
        if stat.S_ISREG(mode):
            files, total = files + 1, total + path.lstat().st_size
    if files > MAX_FILES or total > MAX_BYTES:
        raise SkillError(f"{source} holds {files} files, {total} bytes: the limit is {MAX_FILES} files, "
                         f"{MAX_BYTES} bytes")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _copy_private(source: Path, target: Path) -> None:
    """Copy the tree at `source` to `target` as the home keeps files: directories 0700, files 0600, no links."""
    make_private_dir(target)
    for path in sorted(source.rglob("*")):
        dest = target / path.relative_to(source)
        if path.is_symlink():
            continue
        if path.is_dir():
            make_private_dir(dest)
        elif path.is_file():
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as f, open(path, "rb") as src:
                shutil.copyfileobj(src, f)


def _replace_dir(new: Path | None, path: Path) -> None:
    """Put `new` at `path` (None: remove `path`): the old one is renamed aside first, then deleted."""
    old = path.with_name(f".old-{new_id()}")
    if path.exists():
        os.rename(path, old)
    if new is not None:
        os.rename(new, path)
    shutil.rmtree(old, ignore_errors=True)


def _tree(path: Path) -> dict[str, bytes] | None:
    """Every file under `path` by relative name with its content; None if `path` is not a directory."""
    if not path.is_dir():
        return None
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _description(skill_md: Path) -> str:
    """The `description:` of the SKILL.md front matter, else its first non-empty line."""
    lines = skill_md.read_text(errors="replace").splitlines()
    for line in lines:
        if line.startswith("description:"):
            return line.removeprefix("description:").strip()
    return next((line.strip("# ").strip() for line in lines if line.strip() and line.strip() != "---"), "")

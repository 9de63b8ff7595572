"""Plans: the tasks a swarm starts from, read from a TOML or JSON plan file or a planning tool's wave JSON.

Everything is checked before anything is used: each task against the Task model, ids unique, blockers
known, no dependency cycle. A refusal is one line naming the file, the task and the field.
"""

import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protocol.messages import describe_validation_error
from protocol.base import TaskId
from protocol.task import Task
from protocol.text import read_text
from swarmd.errors import ConfigError
from swarmd.git.repo import valid_branch
from swarmd.git.settings import PLAN_NAME_RE, GitPlan, plan_name
from swarmd.supervisor.validation import check_problem

# The Task fields a plan's author may set; the rest (status, attempts, notes...) belong to the ledger.
TASK_KEYS = ("id", "title", "description", "blocked_by", "tags", "priority", "profile", "timeout",
             "max_attempts", "workdir", "validation", "labels")
PLAN_KEYS = ("name", "git", "defaults", "tasks")
WAVE_KEYS = ("wave", "blocked", "completed")
MAX_SPEC_BYTES = 1024 * 1024

_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([dhms])", re.IGNORECASE)
_UNIT_SECONDS = {"d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0}

M = TypeVar("M", bound=BaseModel)


class PlanError(ConfigError):
    """A plan or wave file that cannot be used."""


class DurationError(ConfigError, ValueError):
    """A timeout that is not a positive duration. A ValueError too, for callers that parse values generically."""


@dataclass
class Plan:
    tasks: list[Task]
    completed: list[str] = field(default_factory=list)  # ids to record as done at once (wave JSON)


class PlanDefaults(BaseModel):
    """`[defaults]`: values for every task that does not set them."""

    model_config = ConfigDict(extra="forbid")

    profile: str | None = Field(default=None, description="The worker profile of tasks that name none.")
    timeout: float | None = Field(default=None, gt=0, description="Seconds (or `20m`, `1h30m`) per attempt.")
    max_attempts: int | None = Field(default=None, ge=1, description="Failed attempts before a task is blocked.")
    tags: list[str] | None = Field(default=None, description="Tags of tasks that set none.")
    workdir: str | None = Field(default=None, description="Where tasks run, relative to the plan file.")


class WaveEntry(BaseModel):
    """A task of the current wave, ready to start."""

    model_config = ConfigDict(extra="forbid")

    id: TaskId = Field(description="The task (bead) id.")
    title: str = Field(description="One line for people.")
    spec_path: str | None = Field(default=None, description=(
        "A file whose text becomes the task's description (relative to the wave file; read when it loads)."))
    priority: int = Field(default=0, description="Lower numbers start first.")


class BlockedEntry(WaveEntry):
    """A task waiting on others."""

    blocked_by: list[TaskId] = Field(description="The tasks it waits on (in this file or already on the board).")


class CompletedEntry(BaseModel):
    """A task already done."""

    model_config = ConfigDict(extra="forbid")

    id: TaskId = Field(description="The task (bead) id.")
    title: str = Field(description="One line for people.")


def parse_duration(value: str | int | float) -> float:
    """Seconds from a number or a string such as "600", "90s", "10m", "1h30m", "2d". Raise DurationError if
    not a positive, finite duration."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DurationError(f"expected seconds or a duration such as '10m', '1h30m', not {value!r}")
    if isinstance(value, str):
        seconds = _parse_duration_text(value)
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise DurationError(f"a duration must be positive, not {value!r}")
    return seconds


def _parse_duration_text(text: str) -> float:
    stripped = text.strip()
    try:
        return float(stripped)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(stripped)
    if not parts or _DURATION_PART.sub("", stripped).strip():
        raise DurationError(f"{text!r} is not a duration: use seconds or e.g. '90s', '10m', '1h30m'")
    return sum(float(number) * _UNIT_SECONDS[unit.lower()] for number, unit in parts)


def load_plan(path: Path, known: Collection[str] = ()) -> Plan:
    """Read a plan file: TOML or JSON by suffix, otherwise whichever parses (JSON first). `blocked_by` may name
    a task of the plan or one in `known` (the ids already on the board). Tasks that name no `workdir` run in
    the plan file's directory."""
    data = _read_structured(path)
    _refuse_unknown(path, "plan", data, PLAN_KEYS)
    base = path.absolute().parent
    defaults = _defaults(path, base, data.get("defaults", {}))
    raw_tasks = data.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise PlanError(f"{path}: no tasks: add a list 'tasks' ([[tasks]] tables in TOML)")
    tasks = [_plan_task(path, base, i, raw, defaults) for i, raw in enumerate(raw_tasks)]
    _check_graph(path, tasks, known)
    git = _git_table(path, data)
    for task in tasks:
        task.metadata = {**task.metadata, "git": git}
    return Plan(tasks=_run_beside(tasks, base))


def load_wave(path: Path, known: Collection[str] = ()) -> Plan:
    """Read the wave JSON that planning tools emit: open `wave` tasks, `blocked` ones waiting on blockers,
    and `completed` ones: open tasks too (so blockers resolve) whose ids are in Plan.completed, for the caller
    to record done with a transition of its own."""
    data = _parse_json(path, _read_text(path))
    _refuse_unknown(path, "wave file", data, WAVE_KEYS)
    if "wave" not in data:
        raise PlanError(f"{path}: not a wave file: the key 'wave' is missing")
    base = path.absolute().parent
    tasks = [_wave_task(path, base, entry) for entry in _entries(path, data, "wave", WaveEntry)]
    tasks += [_wave_task(path, base, entry) for entry in _entries(path, data, "blocked", BlockedEntry)]
    completed = _entries(path, data, "completed", CompletedEntry)
    tasks += [_validated(Task, {"id": c.id, "title": c.title}, path, f"task {c.id!r}") for c in completed]
    _check_graph(path, tasks, known)
    return Plan(tasks=_run_beside(tasks, base), completed=[c.id for c in completed])


# Reading files


def _read_text(path: Path) -> str:
    try:
        return read_text(path)
    except FileNotFoundError:
        raise PlanError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise PlanError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise PlanError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _read_structured(path: Path) -> dict[str, Any]:
    text = _read_text(path)
    suffix = path.suffix.lower()
    if suffix == ".toml":
        return _parse_toml(path, text)
    if suffix == ".json":
        return _parse_json(path, text)
    try:
        return _parse_json(path, text)
    except PlanError as json_error:
        try:
            return _parse_toml(path, text)
        except PlanError as toml_error:
            reasons = "; ".join(str(e).removeprefix(f"{path}: ") for e in (json_error, toml_error))
            raise PlanError(f"{path}: neither JSON nor TOML ({reasons})") from None


def _parse_toml(path: Path, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise PlanError(f"{path}: not valid TOML: nested too deeply") from None


def _parse_json(path: Path, text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(f"{path}: not valid JSON: {exc}") from None
    except RecursionError:
        raise PlanError(f"{path}: not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise PlanError(f"{path}: not valid JSON: expected an object at the top, not {type(data).__name__}")
    return data


# Plan files


def _defaults(path: Path, base: Path, raw: Any) -> PlanDefaults:
    if not isinstance(raw, dict):
        raise PlanError(f"{path}: defaults: must be a table of settings")
    _refuse_unknown(path, "defaults", raw, tuple(PlanDefaults.model_fields))
    values = dict(raw)
    if values.get("timeout") is not None:
        values["timeout"] = _duration(path, "defaults: timeout", values["timeout"])
    defaults = _validated(PlanDefaults, values, path, "defaults")
    if defaults.workdir is not None:
        defaults.workdir = _resolve(base, defaults.workdir)
    return defaults


def _git_table(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """The plan's name (`name`, else its file's stem) and its `[git]` settings, as each task carries them."""
    name = data.get("name", plan_name(path.stem))
    if not isinstance(name, str) or not PLAN_NAME_RE.fullmatch(name):
        raise PlanError(f"{path}: name: {name!r} cannot name branches: use 1-64 characters of a-z, 0-9, '.', '_', "
                        "'-', starting with a letter or digit")
    raw = data.get("git", {})
    if not isinstance(raw, dict):
        raise PlanError(f"{path}: git: must be a table of settings")
    _refuse_unknown(path, "git", raw, tuple(GitPlan.model_fields))
    settings = _validated(GitPlan, raw, path, "git")
    if settings.integration is not None and not valid_branch(settings.integration):
        raise PlanError(f"{path}: git: integration: {settings.integration!r} is not a valid branch name")
    for i, check in enumerate(settings.checks or []):
        if problem := check_problem(check):
            raise PlanError(f"{path}: git: checks.{i}: {problem}")
    return {"plan": name, **settings.model_dump(mode="json", exclude_none=True)}


def _plan_task(path: Path, base: Path, index: int, raw: Any, defaults: PlanDefaults) -> Task:
    if not isinstance(raw, dict):
        raise PlanError(f"{path}: task #{index + 1}: must be a table with an id and a title")
    where = f"task {raw['id']!r}" if isinstance(raw.get("id"), str) else f"task #{index + 1}"
    _refuse_unknown(path, where, raw, TASK_KEYS)
    values = {**defaults.model_dump(exclude_none=True), **raw}
    if raw.get("timeout") is not None:
        values["timeout"] = _duration(path, f"{where}: timeout", raw["timeout"])
    if isinstance(raw.get("validation"), dict):
        values["validation"] = _check_timeouts(path, where, raw["validation"])
    if isinstance(raw.get("workdir"), str):
        values["workdir"] = _resolve(base, raw["workdir"])
    task = _validated(Task, values, path, where)
    _check_checks(path, task)
    return task


def _duration(path: Path, where: str, value: Any) -> float:
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise PlanError(f"{path}: {where}: {exc}") from None


def _check_timeouts(path: Path, where: str, validation: dict[str, Any]) -> dict[str, Any]:
    """The validation table with each check's duration string ("2m") turned into seconds."""
    checks = validation.get("checks")
    if not isinstance(checks, list):
        return validation
    parsed = [
        {**check, "timeout": _duration(path, f"{where}: validation.checks.{i}.timeout", check["timeout"])}
        if isinstance(check, dict) and isinstance(check.get("timeout"), str) else check
        for i, check in enumerate(checks)
    ]
    return {**validation, "checks": parsed}


def _resolve(base: Path, workdir: str) -> str:
    """A workdir relative to the plan file's directory, made absolute (`~` expanded)."""
    return os.path.normpath(base / Path(workdir).expanduser())


def _check_checks(path: Path, task: Task) -> None:
    for i, check in enumerate(task.validation.checks if task.validation else []):
        problem = check_problem(check)
        if problem:
            raise PlanError(f"{path}: task {task.id!r}: validation.checks.{i}: {problem}")


# Wave files


def _entries(path: Path, data: dict[str, Any], section: str, model: type[M]) -> list[M]:
    raw = data.get(section, [])
    if not isinstance(raw, list):
        raise PlanError(f"{path}: {section}: must be a list of tasks")
    entries = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise PlanError(f"{path}: {section}[{i}]: must be an object with an id and a title")
        where = f"task {item['id']!r}" if isinstance(item.get("id"), str) else f"{section}[{i}]"
        entries.append(_validated(model, item, path, where))
    return entries


def _wave_task(path: Path, base: Path, entry: WaveEntry) -> Task:
    values: dict[str, Any] = {"id": entry.id, "title": entry.title, "priority": entry.priority,
                              "description": _spec_text(base, entry.spec_path),
                              "metadata": {"ol_bead_id": entry.id, "ol_spec_path": entry.spec_path,
                                           "ol_priority": entry.priority}}
    if isinstance(entry, BlockedEntry):
        values["blocked_by"] = entry.blocked_by
    return _validated(Task, values, path, f"task {entry.id!r}")


def _spec_text(base: Path, spec_path: str | None) -> str:
    """The spec file's text, or a line pointing at it when it cannot be read now."""
    if not spec_path:
        return ""
    spec = Path(os.path.normpath(base / spec_path))
    try:
        return read_text(spec, limit=MAX_SPEC_BYTES, errors="replace")
    except OSError:
        return f"The spec for this task is at {spec} (it could not be read when the plan was loaded)."


# Shared checks


def _validated(model: type[M], values: dict[str, Any], path: Path, where: str) -> M:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        reason = describe_validation_error(exc).removeprefix("invalid message: ")
        raise PlanError(f"{path}: {where}: {reason}") from None


def _refuse_unknown(path: Path, where: str, raw: dict[str, Any], known: tuple[str, ...]) -> None:
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"expected one of: {', '.join(known)}"
            raise PlanError(f"{path}: {where}: unknown key {key!r}: {hint}")


def _run_beside(tasks: list[Task], base: Path) -> list[Task]:
    """Tasks that name no workdir get the plan file's directory (as docker compose takes its file's)."""
    for task in tasks:
        task.workdir = task.workdir or str(base)
    return tasks


def _check_graph(path: Path, tasks: list[Task], known: Collection[str] = ()) -> None:
    """Ids unique, every blocker a task of this plan or in `known`, and no task waiting (through others) on
    itself. (Tasks in `known` are on the board already and cannot wait on the plan's new ones.)"""
    ids: set[str] = set()
    for task in tasks:
        if task.id in ids:
            raise PlanError(f"{path}: task {task.id!r}: id: used by more than one task")
        ids.add(task.id)
    for task in tasks:
        for blocker in task.blocked_by:
            if blocker not in ids and blocker not in known:
                where = "in this plan or on the board" if known else "in this plan"
                raise PlanError(f"{path}: task {task.id!r}: blocked_by: no task {blocker!r} {where}")
    cycle = find_cycle({task.id: [b for b in task.blocked_by if b in ids] for task in tasks})
    if cycle:
        raise PlanError(f"{path}: task {cycle[0]!r}: blocked_by: dependency cycle {' -> '.join(cycle)}")


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A cycle in `graph` (node -> the nodes it waits on, each one a key) as a path back to its start, or None.

    Iterative depth-first search, so a long chain of tasks cannot hit the recursion limit.
    """
    finished: set[str] = set()
    for root in graph:
        if root in finished:
            continue
        path, on_path = [root], {root}
        stack = [iter(graph[root])]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                on_path.discard(path[-1])
                finished.add(path.pop())
                stack.pop()
            elif nxt in on_path:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in finished:
                path.append(nxt)
                on_path.add(nxt)
                stack.append(iter(graph[nxt]))
    return None

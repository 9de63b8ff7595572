"""Plan and wave files: what loads, and every refusal as one line naming the file and the task."""

import json
from pathlib import Path

import pytest

from protocol.task import Task, TaskStatus
from swarmd.errors import ConfigError
from swarmd.plans.plan import DurationError, PlanError, find_cycle, load_plan, load_wave, parse_duration

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def comparable(tasks: list[Task]) -> list[dict]:
    return [t.model_dump(exclude={"created", "updated"}) for t in tasks]


def write_plan(tmp_path: Path, tasks: list[dict], name: str = "plan.json", **top: object) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"tasks": tasks, **top}))
    return path


def refusal(path: Path, loader=load_plan) -> str:
    with pytest.raises(PlanError) as info:
        loader(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


# Loading


def test_toml_and_json_examples_load_to_the_same_tasks() -> None:
    toml_plan = load_plan(EXAMPLES / "plan.toml")
    json_plan = load_plan(EXAMPLES / "plan.json")
    assert [t.id for t in toml_plan.tasks] == ["schema", "build-api", "docs"]
    assert comparable(toml_plan.tasks) == comparable(json_plan.tasks)
    assert toml_plan.completed == []


def test_example_plan_fields() -> None:
    schema, api, docs = load_plan(EXAMPLES / "plan.toml").tasks
    assert api.blocked_by == ["schema"] and docs.blocked_by == ["build-api"]
    assert api.timeout == 600 and schema.timeout == 1200  # own value; "20m" from the defaults
    assert api.max_attempts == 2 and schema.max_attempts == 3
    assert [c.kind for c in api.validation.checks] == ["files_exist", "content_check", "tests"]
    assert api.validation.checks[2].timeout == 120
    assert all(t.status == TaskStatus.OPEN and t.profile == "claude" for t in (schema, api, docs))
    assert schema.workdir == str(EXAMPLES)


def test_defaults_apply_only_where_a_task_sets_nothing(tmp_path: Path) -> None:
    path = tmp_path / "plan.toml"
    path.write_text("""
[defaults]
profile = "claude"
timeout = "1h30m"
max_attempts = 5
tags = ["team"]
workdir = "repo"

[[tasks]]
id = "a"
title = "A"

[[tasks]]
id = "b"
title = "B"
profile = "codex"
timeout = 30
max_attempts = 1
tags = []
workdir = "/abs/elsewhere"
""")
    a, b = load_plan(path).tasks
    assert (a.profile, a.timeout, a.max_attempts, a.tags, a.workdir) == (
        "claude", 5400.0, 5, ["team"], str(tmp_path / "repo"))
    assert (b.profile, b.timeout, b.max_attempts, b.tags, b.workdir) == ("codex", 30.0, 1, [], "/abs/elsewhere")


def test_relative_workdir_resolves_against_the_plan_directory(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "plans").mkdir()
    write_plan(tmp_path / "plans", [{"id": "a", "title": "A", "workdir": "../src"}])
    monkeypatch.chdir(tmp_path)
    (task,) = load_plan(Path("plans/plan.json")).tasks
    assert task.workdir == str(tmp_path / "src")


def test_unknown_suffix_tries_json_then_toml(tmp_path: Path) -> None:
    as_json = write_plan(tmp_path, [{"id": "a", "title": "A"}], name="plan.txt")
    assert [t.id for t in load_plan(as_json).tasks] == ["a"]
    as_toml = tmp_path / "plan"
    as_toml.write_text('[[tasks]]\nid = "b"\ntitle = "B"\n')
    assert [t.id for t in load_plan(as_toml).tasks] == ["b"]
    neither = tmp_path / "plan.cfg"
    neither.write_text("tasks: [a]\n")
    message = refusal(neither)
    assert "neither JSON nor TOML" in message


@pytest.mark.parametrize("text, seconds", [
    (600, 600.0), (1.5, 1.5), ("600", 600.0), ("90s", 90.0), ("10m", 600.0), ("1h30m", 5400.0),
    ("1h 30m 15s", 5415.0), ("2d", 172_800.0), ("0.5h", 1800.0), (" 10M ", 600.0),
])
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "10x", "1h30", "m", "-5", "0", "0s", "nan", "inf", True, None])
def test_parse_duration_refuses(text: object) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError) and isinstance(info.value, ConfigError)  # the CLI prints ConfigErrors


def test_find_cycle_returns_the_path() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": []}) is None
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": [], "a": ["a"]}) == ["a", "a"]
    chain = {str(i): [str(i + 1)] for i in range(5000)} | {"5000": ["0"]}  # deeper than the recursion limit
    assert len(find_cycle(chain)) == 5002


# Refusals


def test_plan_error_is_a_config_error() -> None:
    assert issubclass(PlanError, ConfigError)


def test_duplicate_id(tmp_path: Path) -> None:
    path = write_plan(tmp_path, [{"id": "a", "title": "A"}, {"id": "a", "title": "again"}])
    assert refusal(path).endswith("task 'a': id: used by more than one task")


def test_unknown_blocker(tmp_path: Path) -> None:
    path = write_plan(tmp_path, [{"id": "a", "title": "A", "blocked_by": ["ghost"]}])
    assert refusal(path).endswith("task 'a': blocked_by: no task 'ghost' in this plan")


def test_cycle_is_named(tmp_path: Path) -> None:
    path = write_plan(tmp_path, [
        {"id": "a", "title": "A", "blocked_by": ["b"]},
        {"id": "b", "title": "B", "blocked_by": ["a"]},
        {"id": "c", "title": "C", "blocked_by": ["a"]},
    ])
    assert refusal(path).endswith("dependency cycle a -> b -> a")


def test_self_dependency_is_a_cycle(tmp_path: Path) -> None:
    path = write_plan(tmp_path, [{"id": "a", "title": "A", "blocked_by": ["a"]}])
    assert "dependency cycle a -> a" in refusal(path)


@pytest.mark.parametrize("field, value, expected", [
    ("priority", "high", "task 'a': priority: Input should be a valid integer"),
    ("max_attempts", 0, "task 'a': max_attempts: Input should be greater than or equal to 1"),
    ("tags", "backend", "task 'a': tags: Input should be a valid list"),
    ("timeout", "soon", "task 'a': timeout: 'soon' is not a duration"),
    ("timeout", -1, "task 'a': timeout: a duration must be positive"),
    ("blocked_by", ["../etc"], "task 'a': blocked_by.0: invalid task id '../etc'"),
])
def test_bad_field(tmp_path: Path, field: str, value: object, expected: str) -> None:
    path = write_plan(tmp_path, [{"id": "a", "title": "A", field: value}])
    assert expected in refusal(path)


def test_unknown_key_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = write_plan(tmp_path, [{"id": "a", "title": "A", "tiemout": 60}])
    assert refusal(path).endswith("task 'a': unknown key 'tiemout': did you mean 'timeout'?")


def test_ledger_fields_are_not_plan_keys(tmp_path: Path) -> None:
    path = write_plan(tmp_path, [{"id": "a", "title": "A", "status": "done"}])
    assert "task 'a': unknown key 'status'" in refusal(path)


def test_check_timeouts_accept_durations(tmp_path: Path) -> None:
    checks = [{"kind": "tests", "run": "true", "timeout": "2m"}, {"kind": "lint", "run": "true", "timeout": 5}]
    path = write_plan(tmp_path, [{"id": "a", "title": "A", "validation": {"checks": checks}}])
    (task,) = load_plan(path).tasks
    assert [c.timeout for c in task.validation.checks] == [120.0, 5.0]
    checks[0]["timeout"] = "a while"
    path = write_plan(tmp_path, [{"id": "a", "title": "A", "validation": {"checks": checks}}])
    assert "task 'a': validation.checks.0.timeout: 'a while' is not a duration" in refusal(path)


def test_unknown_key_in_a_check(tmp_path: Path) -> None:
    path = write_plan(tmp_path, [{"id": "a", "title": "A", "validation": {"checks": [{"kind": "tests", "runn": "x"}]}}])
    assert "task 'a': validation.checks.0.runn: Extra inputs are not permitted" in refusal(path)


@pytest.mark.parametrize("check, expected", [
    ({"kind": "tests"}, "validation.checks.0: a tests check needs 'run'"),
    ({"kind": "files_exist"}, "validation.checks.0: a files_exist check needs 'paths'"),
    ({"kind": "content_check", "path": "x"}, "validation.checks.0: a content_check needs 'path' and 'pattern'"),
    ({"kind": "content_check", "path": "x", "pattern": "("}, "is not a valid regular expression"),
    ({"kind": "smoke", "run": "x"}, "validation.checks.0.kind: Input should be"),
])
def test_unrunnable_check_is_refused_at_load(tmp_path: Path, check: dict, expected: str) -> None:
    path = write_plan(tmp_path, [{"id": "a", "title": "A", "validation": {"checks": [check]}}])
    assert expected in refusal(path)


def test_unknown_top_level_and_default_keys(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"task": [{"id": "a", "title": "A"}]}))
    assert refusal(path).endswith("plan: unknown key 'task': did you mean 'tasks'?")
    path = write_plan(tmp_path, [{"id": "a", "title": "A"}], defaults={"profil": "x"})
    assert "defaults: unknown key 'profil'" in refusal(path)
    path = write_plan(tmp_path, [{"id": "a", "title": "A"}], defaults={"max_attempts": "many"})
    assert "defaults: max_attempts: Input should be a valid integer" in refusal(path)
    path = write_plan(tmp_path, [{"id": "a", "title": "A"}], defaults={"timeout": "later"})
    assert "defaults: timeout: 'later' is not a duration" in refusal(path)


def test_bad_id(tmp_path: Path) -> None:
    path = write_plan(tmp_path, [{"id": "../x", "title": "A"}])
    assert "task '../x': id: invalid task id '../x'" in refusal(path)


def test_missing_title_and_id(tmp_path: Path) -> None:
    path = write_plan(tmp_path, [{"id": "a"}])
    assert refusal(path).endswith("task 'a': title: Field required")
    path = write_plan(tmp_path, [{"id": "a", "title": "A"}, {"title": "B"}])
    assert refusal(path).endswith("task #2: id: Field required")


def test_task_that_is_not_a_table(tmp_path: Path) -> None:
    path = write_plan(tmp_path, ["a"])
    assert "task #1: must be a table" in refusal(path)


def test_no_tasks(tmp_path: Path) -> None:
    assert "no tasks" in refusal(write_plan(tmp_path, []))
    path = tmp_path / "empty.toml"
    path.write_text("[defaults]\nprofile = 'script'\n")
    assert "no tasks" in refusal(path)


def test_file_not_found(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    assert refusal(path) == f"{path}: no such file"
    assert refusal(path, load_wave) == f"{path}: no such file"


def test_invalid_toml_and_json(tmp_path: Path) -> None:
    path = tmp_path / "plan.toml"
    path.write_text('[[tasks]]\nid = "a\ntitle = "A"\n')
    assert "plan.toml: not valid TOML: " in refusal(path)
    path = tmp_path / "plan.json"
    path.write_text('{"tasks": [}')
    assert "plan.json: not valid JSON: " in refusal(path)
    path.write_text('[{"id": "a"}]')
    assert "expected an object at the top" in refusal(path)


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "plan.toml"
    path.write_bytes(b"\xff\xfe\x00tasks")
    assert refusal(path).endswith("not UTF-8 text")


# Wave JSON


def write_wave(tmp_path: Path, **sections: object) -> Path:
    path = tmp_path / "wave.json"
    path.write_text(json.dumps(sections))
    return path


def test_example_wave() -> None:
    plan = load_wave(EXAMPLES / "wave.json")
    tasks = {t.id: t for t in plan.tasks}
    assert plan.completed == ["user-model"]
    assert tasks["auth-docs"].blocked_by == ["auth-tests", "user-model"]
    assert tasks["auth-login"].description == (EXAMPLES / "specs" / "auth-login.md").read_text()
    done = set(plan.completed)
    ready = sorted(t.id for t in plan.tasks if t.id not in done and t.is_ready(done))
    assert ready == ["auth-login", "auth-logout"]


def test_wave_priorities_blockers_and_specs(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "one.md").write_text("Do the first thing.\n")
    path = write_wave(
        tmp_path,
        wave=[{"id": "one", "title": "One", "spec_path": "specs/one.md", "priority": 3},
              {"id": "two", "title": "Two", "spec_path": "specs/two.md", "priority": 1}],
        blocked=[{"id": "three", "title": "Three", "blocked_by": ["one", "old"]}],
        completed=[{"id": "old", "title": "Old"}],
    )
    plan = load_wave(path)
    one, two, three, old = plan.tasks
    assert (one.priority, two.priority) == (3, 1)
    assert one.description == "Do the first thing.\n"
    assert str(tmp_path / "specs" / "two.md") in two.description  # points at the spec it could not read
    assert three.blocked_by == ["one", "old"] and three.status == TaskStatus.OPEN
    assert plan.completed == ["old"] and old.title == "Old"
    assert all(t.status == TaskStatus.OPEN for t in (one, two, three, old))  # the caller records `old` done


def test_wave_sections_are_optional_except_wave(tmp_path: Path) -> None:
    plan = load_wave(write_wave(tmp_path, wave=[{"id": "a", "title": "A"}]))
    assert [t.id for t in plan.tasks] == ["a"] and plan.completed == []
    assert "the key 'wave' is missing" in refusal(write_wave(tmp_path, blocked=[]), load_wave)


@pytest.mark.parametrize("sections, expected", [
    ({"wave": [{"id": "a", "title": "A", "colour": "red"}]}, "task 'a': colour: Extra inputs are not permitted"),
    ({"wave": [{"title": "A"}]}, "wave[0]: id: Field required"),
    ({"wave": [{"id": "a"}]}, "task 'a': title: Field required"),
    ({"wave": [], "blocked": [{"id": "b", "title": "B"}]}, "task 'b': blocked_by: Field required"),
    ({"wave": [], "blocked": [{"id": "b", "title": "B", "blocked_by": ["x"]}]},
     "task 'b': blocked_by: no task 'x' in this plan"),
    ({"wave": [{"id": "a", "title": "A"}], "completed": [{"id": "a", "title": "A"}]},
     "task 'a': id: used by more than one task"),
    ({"wave": [], "blocked": [{"id": "b", "title": "B", "blocked_by": ["c"]},
                              {"id": "c", "title": "C", "blocked_by": ["b"]}]}, "dependency cycle b -> c -> b"),
    ({"wave": {}}, "wave: must be a list"),
    ({"wave": ["a"]}, "wave[0]: must be an object"),
    ({"wave": [], "done": []}, "wave file: unknown key 'done'"),
    ({"wave": [{"id": "../a", "title": "A"}]}, "task '../a': id: invalid task id"),
])
def test_wave_refusals(tmp_path: Path, sections: dict, expected: str) -> None:
    assert expected in refusal(write_wave(tmp_path, **sections), load_wave)

"""Fuzzing the readers of outside input: mailbox files, messages, plans and the two command lines.

Each target must never crash: bad input ends as its own clear error (InvalidMessage, PlanError, a quarantined
file, exit code 2), never as another exception or a traceback. Example counts come from SWARM_FUZZ_EXAMPLES
(default below); `--soak` runs every target with twenty times as many.
"""

import json
import os
import shutil
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentmail import PostOffice
from agentmail.cli import cli as mail_cli
from agentmail.mailbox import Mailbox
from conftest import run_cli
from protocol import InvalidMessage, MessageType, make_message, parse_message
from swarmd.cli import main as swarm_cli
from swarmd.errors import ConfigError
from swarmd.plans.plan import TASK_KEYS, load_plan, load_wave

EXAMPLES = int(os.environ.get("SWARM_FUZZ_EXAMPLES", "150"))
SOAK = 20
CASES: Counter[str] = Counter()

json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
hostile_text = st.sampled_from(["", "..", "../x", "/etc/passwd", "-", "--", "a/b", "\x1b[31m", "$(touch x)", "[red]",
                                "t-1", "w1", "sup", "DONE", "x" * 300, "é", "\udcff"]) | st.text(max_size=12)


def _fuzz_settings(n: int) -> settings:
    return settings(max_examples=n, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@pytest.fixture(scope="module", autouse=True)
def _report_cases() -> Iterator[None]:
    yield
    print("\nfuzz cases tried: " + ", ".join(f"{k} {v}" for k, v in sorted(CASES.items())))


def both(run: Callable[[int], None]) -> tuple[Callable[[], None], Callable[[], None]]:
    """A default test and a soak test of one fuzz target."""
    def default() -> None:
        run(EXAMPLES)

    @pytest.mark.soak
    def soak() -> None:
        run(EXAMPLES * SOAK)

    return default, soak


# -- messages -------------------------------------------------------------------------------------------------


def _valid_message() -> dict[str, Any]:
    message = make_message(MessageType.DONE, "w1", "sup", {"task": "t-1", "files": ["a.py"], "summary": "ok"},
                           thread="t-1")
    return json.loads(message.to_json())


@st.composite
def mutated_messages(draw: st.DrawFn) -> dict[str, Any]:
    data = _valid_message()
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from([*data, "body.task", "body.files", "origin", "extra"]))
        action = draw(st.sampled_from(["drop", "replace", "text"]))
        body = data["body"] if isinstance(data.get("body"), dict) else data
        target, name = (body, key[5:]) if key.startswith("body.") else (data, key)
        if action == "drop":
            target.pop(name, None)
        else:
            target[name] = draw(json_value if action == "replace" else hostile_text)
    return data


message_inputs = (st.binary(max_size=300) | json_value.map(json.dumps) | mutated_messages().map(json.dumps)
                  | st.text(max_size=200))


def fuzz_parse_message(n: int) -> None:
    @_fuzz_settings(n)
    @given(message_inputs | mutated_messages())
    def run(data: Any) -> None:
        CASES["parse_message"] += 1
        try:
            parse_message(data)
        except InvalidMessage:
            pass

    run()


test_parse_message_only_raises_invalid_message, test_parse_message_soak = both(fuzz_parse_message)


def _file_name(data: bytes, seq: int, odd_name: bool) -> str:
    try:
        msg_id = json.loads(data).get("id")
    except (ValueError, AttributeError):
        msg_id = None
    if odd_name or not isinstance(msg_id, str) or not msg_id.isalnum() or len(msg_id) > 64:
        msg_id = "fuzz" if not odd_name else "..odd name"
    return f"{seq:012d}-{msg_id}.json"


def fuzz_mailbox(n: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="fuzz-mail-"))
    box = PostOffice(root).mailbox("w1")
    try:
        _fuzz_mailbox(box, n)
    finally:
        shutil.rmtree(root)


def _fuzz_mailbox(box: Mailbox, n: int) -> None:
    new, bad = box.path / "new", box.path / "bad"

    @_fuzz_settings(n)
    @given(st.lists(st.tuples(message_inputs.map(lambda d: d if isinstance(d, bytes) else d.encode("utf-8", "replace")),
                              st.booleans()), min_size=1, max_size=4))
    def run(files: list[tuple[bytes, bool]]) -> None:
        for directory in (new, bad):
            shutil.rmtree(directory)
            directory.mkdir(mode=0o700)
        names = []
        for seq, (data, odd) in enumerate(files, start=1):
            names.append(_file_name(data, seq, odd))
            (new / names[-1]).write_bytes(data)
        CASES["mailbox files"] += len(files)
        good = {d.name for d in box.list()}
        quarantined = {name for name, _ in box.bad()}
        assert good | quarantined == set(names) and not good & quarantined
        assert set(os.listdir(new)) == good
        assert all((bad / (q + ".reason")).read_text().strip() for q in quarantined)

    run()


test_mailbox_list_quarantines_bad_files, test_mailbox_soak = both(fuzz_mailbox)


# -- plans ----------------------------------------------------------------------------------------------------


task_tables = st.fixed_dictionaries({}, optional={key: json_value | hostile_text for key in TASK_KEYS}) | json_value
plans = st.fixed_dictionaries({}, optional={"tasks": st.lists(task_tables, max_size=4) | json_value,
                                            "defaults": st.dictionaries(st.sampled_from(
                                                ["profile", "timeout", "max_attempts", "tags", "workdir", "x"]),
                                                json_value, max_size=3) | json_value,
                                            "wave": st.lists(task_tables, max_size=3), "extra": json_value})


def _as_toml(plan: dict[str, Any]) -> str:
    """A TOML rendering of a fuzzed plan: values as JSON literals (TOML mostly agrees; where not, a PlanError)."""
    head = [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in plan.items() if k != "tasks"]
    tables = plan.get("tasks") if isinstance(plan.get("tasks"), list) else []
    body = ["[[tasks]]\n" + "\n".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in t.items())
            for t in tables if isinstance(t, dict)]
    return "\n".join(head) + "\n" + "\n".join(body)


def fuzz_plans(n: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="fuzz-plan-"))
    try:
        _fuzz_plans(root, n)
    finally:
        shutil.rmtree(root)


def _fuzz_plans(root: Path, n: int) -> None:
    @_fuzz_settings(n)
    @given(plans, st.binary(max_size=200), st.text(max_size=200))
    def run(plan: dict[str, Any], raw: bytes, text: str) -> None:
        files = {"p.json": json.dumps(plan).encode(), "p.bin": raw, "p.toml": text.encode("utf-8", "replace"),
                 "p": text.encode("utf-8", "replace")}
        files["q.toml"] = _as_toml(plan).encode()
        for name, data in files.items():
            (root / name).write_bytes(data)
            for loader in (load_plan, load_wave):
                CASES["plan files"] += 1
                try:
                    loader(root / name)
                except ConfigError:
                    pass

    run()


test_load_plan_only_raises_plan_errors, test_load_plan_soak = both(fuzz_plans)


# -- command lines --------------------------------------------------------------------------------------------


def _options(command: click.Command) -> list[str]:
    names = [n for p in command.params if isinstance(p, click.Option) for n in p.opts if n != "--home"]
    return names + ["--help", "--json"]


def _commands(group: click.Group, skip: set[str], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], list[str]]]:
    found = []
    ctx = click.Context(group)  # list_commands/get_command, not .commands: `swarm` loads its commands lazily
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        path = (*prefix, name)
        if " ".join(path) in skip:
            continue
        if isinstance(command, click.Group):
            found += _commands(command, skip, path)
        if not isinstance(command, click.Group) or command.invoke_without_command:
            found.append((path, _options(command)))
    return found


MAIL_COMMANDS = _commands(mail_cli, {"wait", "watch", "demo"})
# Left out: commands that run until stopped (`web` serves until Ctrl-C once its port is free) or start workers.
SWARM_COMMANDS = _commands(swarm_cli, {"up", "down", "run", "watch", "wait", "attach", "demo", "worker", "logs",
                                       "teardown", "web"})


@st.composite
def argv(draw: st.DrawFn, commands: list[tuple[tuple[str, ...], list[str]]]) -> list[str]:
    path, options = draw(st.sampled_from(commands))
    tokens = draw(st.lists(st.sampled_from(options) | hostile_text, max_size=6))
    return [*path, *(t for t in tokens if t != "--follow" and t != "-f")]


def fuzz_cli(n: int, group: click.Group, commands: list[tuple[tuple[str, ...], list[str]]], label: str) -> None:
    root = Path(tempfile.mkdtemp(prefix="fuzz-cli-"))
    cwd = os.getcwd()
    try:
        os.chdir(root)
        home = root / "home"
        assert CliRunner().invoke(swarm_cli, ["init", "--home", str(home)]).exit_code == 0
        PostOffice(home).register("w1")
        _fuzz_cli(n, group, commands, label, home, root)
    finally:
        os.chdir(cwd)
        shutil.rmtree(root)


def _fuzz_cli(n: int, group: click.Group, commands: list[tuple[tuple[str, ...], list[str]]], label: str,
              home: Path, root: Path) -> None:
    runner = CliRunner()

    @_fuzz_settings(n)
    @given(argv(commands))
    def run(args: list[str]) -> None:
        CASES[label] += 1
        result = runner.invoke(group, args, input="", env={"SWARM_HOME": str(home), "COLUMNS": "120"})
        crash = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else ""
        assert result.exception is None or isinstance(result.exception, SystemExit), (args, crash)
        assert result.exit_code in (0, 1, 2), (args, result.exit_code, result.output)
        assert "Traceback" not in result.output, (args, result.output)
        assert not (root / "x").exists() and set(os.listdir(root)) == {"home"}, (args, os.listdir(root))

    run()


def fuzz_mail_cli(n: int) -> None:
    fuzz_cli(n, mail_cli, MAIL_COMMANDS, "agentmail argv")


def fuzz_swarm_cli(n: int) -> None:
    fuzz_cli(n, swarm_cli, SWARM_COMMANDS, "swarm argv")


test_agentmail_random_argv, test_agentmail_argv_soak = both(fuzz_mail_cli)
test_swarm_random_argv, test_swarm_argv_soak = both(fuzz_swarm_cli)


REAL_RUNS = [
    ("agentmail", "send", "--from", "../x", "--to", "w1", "--type", "DONE"),
    ("agentmail", "send", "--from", "sup", "--to", "w1", "--type", "NOPE"),
    ("agentmail", "inbox", "\x1b[2J"),
    ("agentmail", "read", "w1", "../../etc/passwd"),
    ("agentmail", "schema", "../nothing"),
    ("swarm", "task", "add"),
    ("swarm", "task", "show", "../x"),
    ("swarm", "feed", "--limit", "-3"),
    ("swarm", "registry", "register", "/etc"),
    ("swarm", "logs", "..\n"),
]


@pytest.mark.parametrize("args", REAL_RUNS, ids=lambda a: " ".join(a)[:40])
def test_real_process_refusals_are_one_clean_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    home = tmp_path / "home"
    CliRunner().invoke(swarm_cli, ["init", "--home", str(home)])
    CASES["real processes"] += 1
    result = run_cli(*args, env={"SWARM_HOME": str(home)})
    assert result.returncode in (1, 2), result
    assert "Traceback" not in result.stderr and result.stderr.strip(), result.stderr
    assert "\x1b" not in result.stderr


@pytest.mark.parametrize("group,args", [(swarm_cli, ["plan", "check", "\x00"]),
                                        (swarm_cli, ["status", "--home", "a\x00"]),
                                        (mail_cli, ["inbox", "w1", "--home", "\x00"])])
def test_a_nul_in_a_path_is_one_clean_line(group: click.Group, args: list[str]) -> None:
    # Found by the fuzzer: click's path check passed a NUL to os.stat, whose ValueError was no user error.
    result = CliRunner().invoke(group, args)
    assert result.exit_code == 2 and "NUL" in result.output and "Traceback" not in result.output, result.output

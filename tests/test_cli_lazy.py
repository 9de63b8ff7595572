"""`swarm` loads a command's module only when that command runs, and still lists and explains every command."""

import importlib
import importlib.metadata
import subprocess
import sys

import click
import pytest

from conftest import run_cli
from swarmd.cli import main


def _modules_after(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `swarm ARGS` in a fresh interpreter; the modules it had imported when it exited."""
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('MODULES', *sorted(sys.modules), file=sys.stderr))\n"
            "from swarmd.cli import main\n"
            f"main({list(args)!r}, prog_name='swarm')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    line = next(line for line in done.stderr.splitlines() if line.startswith("MODULES "))
    return done, set(line.split()[1:])


def test_every_registered_module_defines_exactly_its_commands() -> None:
    modules = set(main.lazy_commands.values())
    for module in modules:
        importlib.import_module(module)
    assert set(main.commands) == set(main.lazy_commands), "a command defined without its one-line registration"


def test_help_lists_every_command() -> None:
    for module in set(main.lazy_commands.values()):
        importlib.import_module(module)
    done = run_cli("swarm", "--help")
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0] for line in done.stdout.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == set(main.commands)


def _packages(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_version_loads_no_command_module_nor_models() -> None:
    done, imported = _modules_after("--version")
    assert done.stdout.strip() == f"swarm, version {importlib.metadata.version('swarmd')}"
    assert not _packages(imported) & {"pydantic", "rich"}
    assert "importlib.metadata" not in imported, "the version is read without scanning installed packages"
    assert not imported & set(main.lazy_commands.values())


def test_a_command_loads_its_own_module_only() -> None:
    done, imported = _modules_after("board", "--json", "--home", "/nonexistent/home")
    assert done.returncode == 2
    assert imported & set(main.lazy_commands.values()) == {main.lazy_commands["board"]}


@pytest.mark.parametrize("args", [("board", "--json", "--home", "/nonexistent/home"),
                                  ("status", "--json", "--home", "/nonexistent/home")])
def test_a_json_command_does_not_load_rich(args: tuple[str, ...]) -> None:
    done, imported = _modules_after(*args)
    assert "no swarm home" in done.stderr
    assert "rich" not in _packages(imported)


@pytest.mark.parametrize("args", [("nosuchcommand",), ("board", "--no-such-option"), ("task", "nosuch")])
def test_usage_errors_stay_one_line(args: tuple[str, ...]) -> None:
    done = run_cli("swarm", *args)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("swarm: error: ")


def test_a_registration_without_its_command_is_a_clear_bug() -> None:
    group = type(main)(name="g")
    group.lazy("swarmd.cli.common", "ghost")
    with pytest.raises(RuntimeError, match="ghost"):
        group.get_command(click.Context(group), "ghost")

"""What every `swarm` command shares: --home, --json, and one-line errors with exit code 2."""

import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import click

from agentmail.clibase import LazyGroup
from agentmail.errors import MailError
from protocol.errors import ProtocolError
from swarmd.errors import HomeError, SwarmError
from swarmd.home import SwarmHome

F = TypeVar("F", bound=Callable[..., Any])

# Errors that are the user's input or environment, not our bugs: one line, exit 2.
USER_ERRORS: tuple[type[BaseException], ...] = (SwarmError, ProtocolError, MailError)


class SwarmGroup(LazyGroup):
    """A group that turns user errors into `swarm: error: ...` and exit 2, never a traceback
    (SWARM_DEBUG=1 prints the traceback too, for bug reports); its commands are loaded on first use."""

    prog = "swarm"

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (*USER_ERRORS, OSError) as exc:
            if os.environ.get("SWARM_DEBUG"):
                traceback.print_exc()
            if isinstance(exc, OSError) and not isinstance(exc, USER_ERRORS):
                fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
            fail(str(exc), getattr(exc, "exit_code", 2))


def fail(message: str, code: int = 2) -> None:
    click.echo(f"swarm: error: {message}", err=True)
    sys.exit(code)


def home_option(f: F) -> F:
    return click.option("--home", "home", type=click.Path(file_okay=False, path_type=str), default=None,
                        help="Swarm home (default: $SWARM_HOME, else the nearest .swarm/ here or in a parent).")(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")(f)


def get_home(home: str | None) -> SwarmHome:
    """The home named (--home, $SWARM_HOME) or found upward; refused unless `swarm init` made it (HomeError)."""
    found = SwarmHome.at(home)
    if not found.exists():
        raise HomeError(f"no swarm home at {found.root}: run `swarm init`")
    return found


def dump_json(value: Any) -> None:
    """Print pydantic models, lists and dicts of them as JSON."""
    click.echo(json.dumps(_plain(value), indent=2, default=str))


def _plain(value: Any) -> Any:
    if hasattr(value, "model_dump"):  # a pydantic model (pydantic is not imported to ask: most commands lack it)
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value

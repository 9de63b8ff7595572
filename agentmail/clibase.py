"""What both command lines (`agentmail` and `swarm`) do the same way: one-line usage errors, and a reader
that goes away (`swarm status | head -1`) ends the command quietly, as it ends `cat` or `git log`."""

import os
import sys
from typing import Any, NoReturn

import click

from protocol.text import inert

# What a shell reports for a process ended by SIGPIPE (128 + 13), as `yes | head -1` leaves `yes`.
EXIT_BROKEN_PIPE = 141
# click 8.2+ raises this usage error, whose message is the whole help, for a group run without a command.
_NO_ARGS_IS_HELP: tuple[type[click.UsageError], ...] = tuple(
    filter(None, [getattr(click.exceptions, "NoArgsIsHelpError", None)]))


def usage_line(prog: str, exc: click.UsageError) -> str:
    """A usage error as one line: `swarm: error: no such option: --foo (try `swarm run --help`)`."""
    message = " ".join(exc.format_message().split())
    message = (message[:1].lower() + message[1:]).rstrip(".")
    command = exc.ctx.command_path if exc.ctx is not None else prog
    return f"{prog}: error: {inert(message)} (try `{command} --help`)"


def quiet_broken_pipe() -> NoReturn:
    """Exit 141 without a word once stdout's reader has gone; stdout is pointed at /dev/null first so that
    the interpreter's last flush does not complain either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # no real stdout to point anywhere (a test runner's buffer)
    finally:
        os.close(devnull)
    sys.exit(EXIT_BROKEN_PIPE)


class OneLineGroup(click.Group):
    """A click group whose usage errors are one line on stderr with exit code 2 and which ends quietly with
    141 on a broken pipe. `prog` names the program in its messages."""

    prog = "agentmail"

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NO_ARGS_IS_HELP as exc:  # a group run without a command: its help, as click prints it
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            click.echo(usage_line(self.prog, exc), err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"{self.prog}: error: {inert(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except BrokenPipeError:
            quiet_broken_pipe()
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            quiet_broken_pipe()

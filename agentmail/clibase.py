"""What both command lines (`agentmail` and `swarm`) do the same way: one-line usage errors, and a reader
that goes away (`swarm status | head -1`) ends the command quietly, as it ends `cat` or `git log`."""

import importlib
import sys
from typing import Any

import click

from agentmail.pipes import quiet_broken_pipe
from protocol.text import inert

# click 8.2+ raises this usage error, whose message is the whole help, for a group run without a command.
_NO_ARGS_IS_HELP: tuple[type[click.UsageError], ...] = tuple(
    filter(None, [getattr(click.exceptions, "NoArgsIsHelpError", None)]))


def usage_line(prog: str, exc: click.UsageError) -> str:
    """A usage error as one line: `swarm: error: no such option: --foo (try `swarm run --help`)`."""
    message = " ".join(exc.format_message().split())
    message = (message[:1].lower() + message[1:]).rstrip(".")
    command = exc.ctx.command_path if exc.ctx is not None else prog
    return f"{prog}: error: {inert(message)} (try `{command} --help`)"


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
        except ValueError as exc:  # a NUL in a path or name reached the OS (only possible from within Python)
            if str(exc) != "embedded null byte":
                raise
            click.echo(f"{self.prog}: error: a path or name cannot hold a NUL byte", err=True)
            sys.exit(2)


class LazyGroup(OneLineGroup):
    """A group whose commands are defined in modules imported only when one of their commands is needed:
    `swarm status` does not pay for importing every command's dependencies (click's documented LazyGroup
    pattern, "Lazily Loading Subcommands"). A module adds its commands to the group with the usual decorators;
    `lazy()` names it and the commands it defines. Listing the commands (`--help`) imports every module."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands: dict[str, str] = {}

    def lazy(self, module: str, *names: str) -> None:
        """Register the commands `names`, which importing `module` adds to this group."""
        self.lazy_commands.update(dict.fromkeys(names, module))

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command `cmd_name`, importing its module first if need be; RuntimeError if the module that was
        registered for it does not define it (a registration out of step with its module: a bug)."""
        module = self.lazy_commands.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            importlib.import_module(module)
            if cmd_name not in self.commands:
                raise RuntimeError(f"{module} is registered for the command {cmd_name!r} but does not define it")
        return super().get_command(ctx, cmd_name)

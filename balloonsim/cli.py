"""`balloonsim` command line: thin; parses, calls the library, prints.

The commands are defined next to the library code they drive and listed in `balloonsim.commands`; the group
imports a command's module only when that command is run (or asked for its own help).
"""

from __future__ import annotations

import atexit
import gc
import sys

import click

from balloonsim import environ
from balloonsim.commands import COMMANDS
from balloonsim.errors import UserError


class _Group(click.Group):
    """Turns UserError into one clear line on stderr and exit status 2; loads commands on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.add_command(COMMANDS[cmd_name].load(), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's listing, with the help of a command not yet loaded taken from the table."""
        names = self.list_commands(ctx)
        rows = []
        limit = formatter.width - 6 - max(map(len, names), default=0)
        for name in names:
            command = self.commands.get(name) or click.Command(name, help=COMMANDS[name].short_help)
            if not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"balloonsim: error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="balloonsim")
def cli() -> None:
    """Simulate where the memmap of hot-added memory should come from."""


def main(argv: list[str] | None = None) -> None:
    environ.settle()  # before any command loads numpy or pyarrow
    atexit.register(skip_final_collection)
    cli.main(args=argv, prog_name="balloonsim", standalone_mode=True)


def skip_final_collection() -> None:
    """At exit: move every object out of the garbage collector's reach, so that the interpreter's last
    collection does not walk the whole heap of pandas and pyarrow objects (a fifth of a second after a `run`)
    only for the process to end. Every file balloonsim writes is closed by then."""
    gc.freeze()


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])

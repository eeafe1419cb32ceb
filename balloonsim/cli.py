"""`balloonsim` command line: thin; parses, calls the library, prints.

Each area registers its commands from its own module so that this file stays small.
"""

from __future__ import annotations

import sys

import click

from balloonsim.errors import UserError


class _Group(click.Group):
    """Turns UserError into one clear line on stderr and exit status 2."""

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


def _register() -> None:
    from balloonsim import commands

    for command in commands.all_commands():
        cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    _register()
    cli.main(args=argv, prog_name="balloonsim", standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])

"""`balloonsim bench`: measure speed and scale against bare SimPy; print a table (or JSON)."""

from __future__ import annotations

import json

import click

from balloonsim.bench.plan import SECTIONS, parse_only
from balloonsim.errors import UserError


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of tables.")
@click.option(
    "--quick",
    is_flag=True,
    help="A smaller set (under a minute): fewer repeats, scale up to 256 GiB, "
    "sweeps of 2 replications per design point.",
)
@click.option(
    "--only",
    "only",
    multiple=True,
    metavar="NAME",
    help=f"Run only these sections ({', '.join(SECTIONS)}); repeat or separate with commas.",
)
@click.option(
    "--experiment",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="The sweep experiment [experiments/quickstart.toml].",
)
@click.option(
    "--wait-quiet",
    "wait_quiet_s",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    metavar="SECONDS",
    help="Before each section, wait up to this long for other processes to leave the CPUs (on a shared host).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")
def bench(
    as_json: bool, quick: bool, only: tuple[str, ...], experiment: str | None, wait_quiet_s: float, quiet: bool
) -> None:
    """Benchmarks: bare SimPy's event rate, the reference scenario against it, hot-add scale, sweeps.

    Measures and prints; asserts nothing about time.  The goals are ratios of figures measured side by side
    (see benchmarks/README.md).
    """
    from balloonsim.bench.suite import measure  # the measurements import SimPy and the simulator
    from balloonsim.bench.tables import format_table

    try:
        parse_only(only)
    except ValueError as exc:
        raise UserError(f"--only: {exc}") from None

    def progress(msg: str) -> None:
        if not quiet:
            click.echo(f"bench: {msg}", err=True)

    result = measure(quick=quick, only=only, experiment=experiment, progress=progress, wait_quiet_s=wait_quiet_s)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(format_table(result), nl=False)

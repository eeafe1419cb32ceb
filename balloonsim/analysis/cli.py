"""`balloonsim analyze|plot|report DIR` and `balloonsim index DIR`: thin click wrappers over the analysis.

Registered by balloonsim/commands.py as "balloonsim.analysis.cli": ("analyze", "plot", "report", "index").
Progress goes to stderr, one line per phase; what was written goes to stdout, REPORT.md last. The analysis
(pandas, scipy) and the results store load only once a command runs: `--help` costs click and this module.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import click

from balloonsim.analysis.confidence import ALPHA

_DIR = click.argument("directory", metavar="DIR", type=click.Path(path_type=Path))
_BY = click.option(
    "--by",
    metavar="FACTOR",
    default=None,
    help="Factor whose levels are compared (default: memmap.strategy, else the first factor that varies).",
)
_ALPHA = click.option(
    "--alpha",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=ALPHA,
    show_default=True,
    help="Significance level applied to Holm-corrected p-values.",
)
_SVG = click.option("--svg", is_flag=True, help="Also write each figure as SVG (PNG only by default).")
_QUIET = click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")


def _pipeline(directory: Path) -> ModuleType:
    """The analysis steps, loaded now, once `directory` is known not to be written by a batch still running."""
    from balloonsim.experiment.store import check_not_running

    check_not_running(directory)
    from balloonsim.analysis import pipeline

    return pipeline


def _progress(quiet: bool) -> Callable[[str], None]:
    from balloonsim.analysis import pipeline

    return pipeline.quiet if quiet else pipeline.stderr


@click.command("analyze")
@click.argument("directory", metavar="[DIR]", required=False, type=click.Path(path_type=Path))
@_BY
@_ALPHA
@click.option(
    "--describe",
    is_flag=True,
    help="Print what each metric measures (DIR/metrics.csv; without DIR, every metric balloonsim knows).",
)
@_QUIET
def analyze(directory: Path | None, by: str | None, alpha: float, describe: bool, quiet: bool) -> None:
    """Write DIR/summary.csv, comparisons.csv and metrics.csv from DIR/runs.csv.

    \b
    Examples:
      balloonsim analyze results/pressure
      balloonsim analyze --describe results/pressure
    """
    if describe:
        _describe(directory)
        return
    if directory is None:
        raise click.UsageError("missing DIR (a results directory; or --describe to list the metrics)")
    pipeline = _pipeline(directory)
    result = pipeline.analyze(directory, by=by, alpha=alpha, progress=_progress(quiet))
    comp = result.comparisons
    n_sig = int(comp["significant"].sum()) if not comp.empty else 0
    n_det = int(comp["deterministic"].sum()) if not comp.empty else 0
    click.echo(f"{directory / pipeline.SUMMARY}: {len(result.summary)} rows")
    described = set(result.results.columns) | set(result.results.metrics)  # runs.csv's columns and derived ones
    click.echo(f"{directory / pipeline.METRICS}: {len(described)} metrics described")
    click.echo(
        f"{directory / pipeline.COMPARISONS}: {len(comp)} comparisons along {result.by}, "
        f"{n_sig} significant after Holm (alpha {alpha:g}), {n_det} deterministic (identical runs on each side)"
    )


def _describe(directory: Path | None) -> None:
    import pandas as pd

    from balloonsim.analysis.load import load
    from balloonsim.analysis.metrics import describe
    from balloonsim.analysis.pipeline import METRICS

    if directory is None:
        table = describe()
        source = "every metric balloonsim describes"
    elif (directory / METRICS).is_file():
        table = pd.read_csv(directory / METRICS, keep_default_na=False)
        source = str(directory / METRICS)
    else:
        results = load(directory)
        table = describe([*results.columns, *[m for m in results.metrics if m not in results.columns]])
        source = f"the metric columns of {directory / 'runs.csv'}"
    click.echo(f"{len(table)} metrics ({source}):")
    for row in table.itertuples(index=False):
        click.echo(f"\n{row.name}  [{row.unit}; {row.direction}; {row.producer}]")
        click.echo(textwrap.fill(str(row.definition), 100, initial_indent="    ", subsequent_indent="    "))


@click.command("plot")
@_DIR
@_BY
@click.option(
    "--metric",
    "metrics",
    metavar="NAME",
    multiple=True,
    help="Plot this metric (repeatable); default: the key metrics that vary.",
)
@click.option(
    "--regime",
    metavar="F=V[,F=V...]",
    default=None,
    help="Regime of the timeline plot, e.g. 'onlining.delay=30' (results/pressure) (levels as the report "
    "spells them, e.g. 'driver=hyperv request_offset=2M'); default: where the strategies differ most.",
)
@_ALPHA
@_SVG
@_QUIET
def plot(
    directory: Path, by: str | None, metrics: tuple[str, ...], regime: str | None, alpha: float, svg: bool, quiet: bool
) -> None:
    """Draw the figures into DIR/plots/ (PNG; SVG with --svg)."""
    pipeline = _pipeline(directory)
    made = pipeline.plot(
        directory, by=by, metrics=list(metrics) or None, regime=regime, alpha=alpha, svg=svg, progress=_progress(quiet)
    )
    for path in made:
        click.echo(str(path))
    if not made:
        click.echo("no figure applies to these results (nothing varies or the columns are missing)")


@click.command("report")
@_DIR
@_BY
@_ALPHA
@click.option(
    "--keep-plots",
    is_flag=True,
    help="Embed the figures already in DIR/plots/ (e.g. from `plot --metric`) even if the data is newer.",
)
@click.option("--redraw", is_flag=True, help="Draw the figures again even when those in DIR/plots/ are current.")
@_SVG
@_QUIET
def report(
    directory: Path, by: str | None, alpha: float, keep_plots: bool, redraw: bool, svg: bool, quiet: bool
) -> None:
    """Write DIR/REPORT.md and a self-contained DIR/report.html (analysis and figures included)."""
    if keep_plots and redraw:
        raise click.UsageError("--keep-plots and --redraw contradict each other; give one")
    pipeline = _pipeline(directory)
    md, page = pipeline.report(
        directory, by=by, alpha=alpha, keep_plots=keep_plots, redraw=redraw, svg=svg, progress=_progress(quiet)
    )
    click.echo(str(page))
    click.echo(str(md))


@click.command("index")
@click.argument("directory", metavar="[DIR]", default="results", type=click.Path(path_type=Path))
def index(directory: Path) -> None:
    """Write DIR/README.md: each study's question and the answer of its REPORT.md (default DIR: results).

    \b
    Example:
      balloonsim index results/
    """
    from balloonsim.analysis.index import write_index

    click.echo(str(write_index(directory)))

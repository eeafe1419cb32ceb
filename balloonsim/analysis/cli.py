"""`balloonsim analyze|plot|report DIR`: thin click wrappers over balloonsim.analysis.pipeline.

Registered by balloonsim/commands.py as "balloonsim.analysis.cli": ("analyze", "plot", "report").
"""

from __future__ import annotations

from pathlib import Path

import click

from balloonsim.analysis import pipeline
from balloonsim.experiment.store import check_not_running

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
    default=pipeline.ALPHA,
    show_default=True,
    help="Significance level applied to Holm-corrected p-values.",
)


@click.command("analyze")
@_DIR
@_BY
@_ALPHA
def analyze(directory: Path, by: str | None, alpha: float) -> None:
    """Write DIR/summary.csv and DIR/comparisons.csv from DIR/runs.csv."""
    check_not_running(directory)
    result = pipeline.analyze(directory, by=by, alpha=alpha)
    comp = result.comparisons
    n_sig = int(comp["significant"].sum()) if not comp.empty else 0
    n_det = int(comp["deterministic"].sum()) if not comp.empty else 0
    click.echo(f"{directory / pipeline.SUMMARY}: {len(result.summary)} rows")
    click.echo(
        f"{directory / pipeline.COMPARISONS}: {len(comp)} comparisons along {result.by}, "
        f"{n_sig} significant after Holm (alpha {alpha:g}), {n_det} deterministic (identical runs on each side)"
    )


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
    help="Regime of the timeline plot, e.g. 'driver.name=xen,onlining.delay_s=5' (levels as the report "
    "spells them, e.g. 'driver=hyperv request_offset=2M'); default: where the strategies differ most.",
)
@_ALPHA
def plot(directory: Path, by: str | None, metrics: tuple[str, ...], regime: str | None, alpha: float) -> None:
    """Draw PNG and SVG figures into DIR/plots/."""
    check_not_running(directory)
    made = pipeline.plot(directory, by=by, metrics=list(metrics) or None, regime=regime, alpha=alpha)
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
    help="Embed the figures already in DIR/plots/ (e.g. from `plot --metric`) instead of redrawing them.",
)
def report(directory: Path, by: str | None, alpha: float, keep_plots: bool) -> None:
    """Write DIR/REPORT.md and a self-contained DIR/report.html (analysis and figures included)."""
    check_not_running(directory)
    md, page = pipeline.report(directory, by=by, alpha=alpha, keep_plots=keep_plots)
    click.echo(str(md))
    click.echo(str(page))

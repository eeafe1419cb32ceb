"""The three steps (analyze, plot, report) and `finish`, which the runner calls at the end of a batch.

Each step can run alone. plot and report always analyze again (a few seconds) and rewrite the CSVs, so the
figures, the report and the CSVs next to them never disagree, whatever ran before.
"""

from __future__ import annotations

from pathlib import Path

from balloonsim.analysis.compare import ALPHA, compare
from balloonsim.analysis.core import Analysis
from balloonsim.analysis.load import load
from balloonsim.analysis.stats import summarize

SUMMARY = "summary.csv"
COMPARISONS = "comparisons.csv"


def analyze(path: str | Path, by: str | None = None, alpha: float = ALPHA) -> Analysis:
    """Write DIR/summary.csv and DIR/comparisons.csv."""
    results = load(path)
    by = results.resolve_by(by)
    summary = summarize(results)
    comparisons = compare(results, by, alpha)
    summary.to_csv(results.path / SUMMARY, index=False)
    comparisons.to_csv(results.path / COMPARISONS, index=False)
    return Analysis(results, by, summary, comparisons, alpha)


def plot(
    path: str | Path,
    by: str | None = None,
    metrics: list[str] | None = None,
    regime: str | None = None,
    alpha: float = ALPHA,
) -> list[Path]:
    """Figures into DIR/plots/ (PNG and SVG); returns the PNG paths. Analyzes first, so numbers agree."""
    from balloonsim.analysis.plots import check_options, make_plots  # matplotlib: only when drawing

    results = load(path)
    check_options(results, results.resolve_by(by), metrics, regime)  # fail before minutes of work
    return make_plots(analyze(path, by, alpha), metrics=metrics, regime=regime)


def report(
    path: str | Path, by: str | None = None, alpha: float = ALPHA, keep_plots: bool = False
) -> tuple[Path, Path]:
    """DIR/REPORT.md and DIR/report.html, after the analysis and the figures.

    keep_plots uses the figures already in DIR/plots/ (say from `plot --metric ...`) instead of redrawing.
    """
    from balloonsim.analysis.plots import make_plots, manifest  # matplotlib: only when drawing
    from balloonsim.analysis.report import write_report

    analysis = analyze(path, by, alpha)
    if not keep_plots or manifest(analysis.results.path) is None:
        make_plots(analysis)
    return write_report(analysis)


def finish(path: str | Path, by: str | None = None) -> tuple[Path, Path]:
    """analyze, plot and report in order: what `balloonsim run` does at the end unless --no-report."""
    return report(path, by)

"""The three steps (analyze, plot, report) and `finish`, which the runner calls at the end of a batch.

Each step can run alone: plot and report reuse summary.csv/comparisons.csv when they are newer than runs.csv
and were made along the same factor, and recompute them otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from balloonsim.analysis.compare import ALPHA, compare
from balloonsim.analysis.load import Results, load
from balloonsim.analysis.stats import summarize

SUMMARY = "summary.csv"
COMPARISONS = "comparisons.csv"


@dataclass
class Analysis:
    """Loaded results plus the two tables every later step reads."""

    results: Results
    by: str | None
    summary: pd.DataFrame
    comparisons: pd.DataFrame
    alpha: float = ALPHA


def analyze(path: str | Path, by: str | None = None, alpha: float = ALPHA) -> Analysis:
    """Write DIR/summary.csv and DIR/comparisons.csv."""
    results = load(path)
    by = results.resolve_by(by)
    summary = summarize(results)
    comparisons = compare(results, by, alpha)
    summary.to_csv(results.path / SUMMARY, index=False)
    comparisons.to_csv(results.path / COMPARISONS, index=False)
    return Analysis(results, by, summary, comparisons, alpha)


def ensure_analysis(path: str | Path, by: str | None = None, alpha: float = ALPHA) -> Analysis:
    """Reuse the CSVs when fresh and made along `by` with the same alpha; otherwise analyze again."""
    results = load(path)
    resolved = results.resolve_by(by)
    summary_path, comparisons_path = results.path / SUMMARY, results.path / COMPARISONS
    runs_mtime = (results.path / "runs.csv").stat().st_mtime
    fresh = all(p.is_file() and p.stat().st_mtime >= runs_mtime for p in (summary_path, comparisons_path))
    if fresh:
        try:
            summary = pd.read_csv(summary_path)
            comparisons = pd.read_csv(comparisons_path, dtype={"a": str, "b": str, "winner": str})
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
            fresh = False
        else:
            fresh = _matches(comparisons, resolved, alpha)
    if not fresh:
        return analyze(path, by, alpha)
    comparisons["winner"] = comparisons["winner"].fillna("")
    return Analysis(results, resolved, summary, _restore_levels(results, resolved, comparisons), alpha)


def plot(path: str | Path, by: str | None = None, metrics: list[str] | None = None,
         regime: str | None = None, alpha: float = ALPHA) -> list[Path]:
    """Figures into DIR/plots/ (PNG and SVG); returns the PNG paths."""
    from balloonsim.analysis.plots import make_plots

    return make_plots(ensure_analysis(path, by, alpha), metrics=metrics, regime=regime)


def report(path: str | Path, by: str | None = None, alpha: float = ALPHA, replot: bool = False) -> tuple[Path, Path]:
    """DIR/REPORT.md and DIR/report.html; draws the figures first unless DIR/plots/ is newer than the analysis."""
    from balloonsim.analysis.plots import INDEX, PLOTS, make_plots
    from balloonsim.analysis.report import write_report

    analysis = ensure_analysis(path, by, alpha)
    index = analysis.results.path / PLOTS / INDEX
    analysed = (analysis.results.path / COMPARISONS).stat().st_mtime
    if replot or not index.is_file() or index.stat().st_mtime < analysed:
        make_plots(analysis)
    return write_report(analysis)


def finish(path: str | Path, by: str | None = None) -> tuple[Path, Path]:
    """analyze, plot and report in order: what `balloonsim run` does at the end unless --no-report."""
    from balloonsim.analysis.plots import make_plots
    from balloonsim.analysis.report import write_report

    analysis = analyze(path, by)
    make_plots(analysis)
    return write_report(analysis)


def _matches(comparisons: pd.DataFrame, by: str | None, alpha: float) -> bool:
    if comparisons.empty:
        return "by" in comparisons.columns and by is None
    if "by" not in comparisons.columns or "significant" not in comparisons.columns:
        return False
    same_by = set(comparisons["by"].astype(str)) == {str(by)}
    same_alpha = ((comparisons["p_holm"] < alpha) == comparisons["significant"].astype(bool)).all()
    return bool(same_by and same_alpha)


def _restore_levels(results: Results, by: str | None, comparisons: pd.DataFrame) -> pd.DataFrame:
    """CSV turns levels into text; map a/b back to the level objects of runs.csv so lookups match."""
    if by is None or comparisons.empty:
        return comparisons
    by_text = {str(level): level for level in results.levels(by)}
    out = comparisons.copy()
    for col in ("a", "b"):
        out[col] = out[col].map(lambda v: by_text.get(str(v), v))
    return out

"""The three steps (analyze, plot, report) and `finish`, which the runner calls at the end of a batch.

Each step can run alone. analyze always computes and writes the CSVs. plot and report reuse summary.csv and
comparisons.csv when they are newer than the data and were made with the same --by and --alpha, and analyze
again otherwise, so the figures, the report and the CSVs next to them never disagree, whatever ran before.
report likewise reuses the figures in plots/ when they are current, and draws them otherwise (or when asked
to). Each phase says what it did on the `progress` callback (one line each: summary, comparisons, plots,
report); the last line names REPORT.md.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from balloonsim.analysis.compare import compare
from balloonsim.analysis.confidence import ALPHA
from balloonsim.analysis.core import Analysis
from balloonsim.analysis.load import Results, data_mtime, load
from balloonsim.analysis.metrics import describe
from balloonsim.analysis.plots import Drawing, current, manifest
from balloonsim.analysis.stats import summarize
from balloonsim.collector import long_lived_set_aside

SUMMARY = "summary.csv"
COMPARISONS = "comparisons.csv"
METRICS = "metrics.csv"

Progress = Callable[[str], None]


def stderr(line: str) -> None:
    """The default progress: one line on stderr, flushed (a pipe or a log file sees it at once)."""
    print(line, file=sys.stderr, flush=True)


def quiet(line: str) -> None:
    """No progress lines."""


def analyze(path: str | Path, by: str | None = None, alpha: float = ALPHA, progress: Progress = quiet) -> Analysis:
    """Write DIR/summary.csv, DIR/metrics.csv and DIR/comparisons.csv."""
    start = time.perf_counter()
    with long_lived_set_aside():
        results = load(path)
        return _analyze(results, results.resolve_by(by), alpha, progress, start)


def _analyze(
    results: Results, by: str | None, alpha: float, progress: Progress, start: float, compared_s: float = 0.0
) -> Analysis:
    """`start`: when the summary's clock starts; `compared_s`: time spent on comparisons before (the time line's
    metric), counted in the comparisons' time."""
    summary = summarize(results)
    summary.to_csv(results.path / SUMMARY, index=False)
    describe([*results.columns, *[m for m in results.metrics if m not in results.columns]]).to_csv(
        results.path / METRICS, index=False
    )
    progress(
        f"analysis: {results.path / SUMMARY} ({len(summary)} rows) and {METRICS} "
        f"({len(results.runs)} runs, {int(results.alive.sum())} survived) [{time.perf_counter() - start:.1f} s]"
    )
    start = time.perf_counter()
    comparisons = compare(results, by, alpha)
    comparisons.to_csv(results.path / COMPARISONS, index=False)
    n_sig = int(comparisons["significant"].sum()) if not comparisons.empty else 0
    n_det = int(comparisons["deterministic"].sum()) if not comparisons.empty else 0
    progress(
        f"analysis: {results.path / COMPARISONS} ({len(comparisons)} comparisons along {by}: {n_sig} significant "
        f"after Holm, {n_det} deterministic) [{time.perf_counter() - start + compared_s:.1f} s]"
    )
    return Analysis(results, by, summary, comparisons, alpha)


def _analysis(
    results: Results,
    by: str | None,
    alpha: float,
    progress: Progress,
    start: float,
    comparisons=None,
    compared_s: float = 0.0,
):
    """The analysis in the CSVs when they are current (`comparisons`, when already read back by
    _current_comparisons), else a fresh one (written); `by` resolved."""
    comparisons = _current_comparisons(results, by, alpha) if comparisons is None else comparisons
    if comparisons is None:
        return _analyze(results, by, alpha, progress, start, compared_s)
    import pandas as pd

    summary = pd.read_csv(results.path / SUMMARY)
    progress(
        f"analysis: {results.path / SUMMARY} and {METRICS} current (newer than the data): reused "
        f"[{time.perf_counter() - start:.1f} s]"
    )
    progress(f"analysis: {results.path / COMPARISONS} current ({len(comparisons)} comparisons along {by}): reused")
    return Analysis(results, by, summary, comparisons, alpha)


def _current_comparisons(results, by: str | None, alpha: float):
    """comparisons.csv read back when it, summary.csv and metrics.csv are newer than every data file and were
    made along `by` at `alpha` in today's layout; None otherwise."""
    import pandas as pd

    from balloonsim.analysis.compare import comparison_columns
    from balloonsim.analysis.findings import read_text_columns

    root = results.path
    made = [root / SUMMARY, root / COMPARISONS, root / METRICS]
    if not all(p.is_file() for p in made):
        return None
    if min(p.stat().st_mtime for p in made) < data_mtime(root):
        return None
    comp = read_text_columns(pd.read_csv(root / COMPARISONS))
    if list(comp.columns) != comparison_columns(results, by) or comp.empty:
        return None
    if not (comp["by"] == str(by)).all() or not (comp["alpha"] == alpha).all():
        return None
    return comp


def plot(
    path: str | Path,
    by: str | None = None,
    metrics: list[str] | None = None,
    regime: str | None = None,
    alpha: float = ALPHA,
    svg: bool = False,
    progress: Progress = quiet,
) -> list[Path]:
    """Figures into DIR/plots/ (PNG; SVG too with svg=True); returns the PNG paths. Analyzes first, so numbers
    agree; the figures that need no comparisons are drawn meanwhile."""
    start = time.perf_counter()
    with long_lived_set_aside():
        return _plot(load(path), by, metrics, regime, alpha, svg, progress, start)


def _plot(results: Results, by, metrics, regime, alpha: float, svg: bool, progress: Progress, start: float):
    by = results.resolve_by(by)
    with Drawing(results, by, metrics, regime, svg) as drawing:  # checks the options before minutes of work
        analysis = _analysis_drawing(drawing, results, by, alpha, progress, start)
        start = time.perf_counter()
        drawing.add(analysis)
        return _draw(drawing, analysis, progress, start)


def _analysis_drawing(drawing: Drawing, results: Results, by, alpha: float, progress: Progress, start: float):
    """_analysis, with the time line started as soon as the comparisons of its metric are known (computed for
    it alone first when the table is not current: the rest are computed while it is drawn)."""
    current = _current_comparisons(results, by, alpha)
    begun = time.perf_counter()
    if current is not None:
        drawing.start_timeline(lambda m: current[current["metric"] == m])
    else:
        drawing.start_timeline(lambda m: compare(results, by, alpha, [m]))
    compared_s = time.perf_counter() - begun
    return _analysis(results, by, alpha, progress, start + compared_s, current, compared_s)


def _draw(drawing: Drawing, analysis: Analysis, progress: Progress, start: float) -> list[Path]:
    """Wait for the figures; the time reported runs from the end of the analysis (`start`)."""
    made = drawing.finish()
    progress(
        f"analysis: {analysis.results.path / 'plots'} ({len(made)} figures drawn) [{time.perf_counter() - start:.1f} s]"
    )
    return made


def report(
    path: str | Path,
    by: str | None = None,
    alpha: float = ALPHA,
    keep_plots: bool = False,
    redraw: bool = False,
    svg: bool = False,
    progress: Progress = quiet,
) -> tuple[Path, Path]:
    """DIR/REPORT.md and DIR/report.html, after the analysis and the figures.

    The figures in DIR/plots/ are reused when they are current (same options, newer than the data); keep_plots
    reuses whatever is there (say from `plot --metric ...`), redraw draws them again regardless.
    """
    start = time.perf_counter()
    with long_lived_set_aside():
        return _report(load(path), by, alpha, keep_plots, redraw, svg, progress, start)


def _report(results: Results, by, alpha: float, keep_plots: bool, redraw: bool, svg: bool, progress, start: float):
    from balloonsim.analysis.report import draft, write_report

    by = results.resolve_by(by)
    root = results.path
    have = manifest(root) is not None
    if redraw or not have or not (keep_plots or current(root, by, alpha, svg)):
        with Drawing(results, by, svg=svg) as drawing:
            analysis = _analysis_drawing(drawing, results, by, alpha, progress, start)
            start = time.perf_counter()
            drawing.add(analysis)
            text = draft(analysis)  # while the last figures are drawn
            _draw(drawing, analysis, progress, start)
    else:
        analysis = _analysis(results, by, alpha, progress, start)
        progress(f"analysis: {root / 'plots'} ({len(manifest(root) or [])} figures reused: newer than the data)")
        text = None
    md, page = write_report(analysis, text)
    progress(f"analysis: report written, {page.name} beside it: {md}")
    return md, page


def finish(path: str | Path, by: str | None = None, progress: Progress = stderr) -> tuple[Path, Path]:
    """analyze, plot and report in order: what `balloonsim run` does at the end unless --no-report."""
    return report(path, by, progress=progress)

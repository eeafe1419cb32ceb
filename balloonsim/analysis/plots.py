"""Choose and draw the figures a results directory supports, into DIR/plots/, with a manifest for the report.

What is drawn depends on the data: a factor with one level is never an axis, a metric that is constant is not
plotted against anything, and figures whose columns are missing are skipped with a note instead of failing.
plots/index.json lists each figure with its title and caption and the options it was drawn with; it lets a rerun
remove only its own old files, and `report` reuse figures that are newer than the data instead of redrawing.
Each figure is drawn once, as PNG; SVG copies only on request. The drawing modules (matplotlib) are imported
only when something is drawn: a report that reuses its figures never loads them.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from balloonsim.analysis.compare import differs
from balloonsim.analysis.core import Analysis
from balloonsim.analysis.load import DERIVED, Results, data_mtime
from balloonsim.analysis.metrics import PRIMARY_ORDER, TABLE, info
from balloonsim.errors import UserError

PLOTS = "plots"
FORMATS = ("png", "svg")
INDEX = "index.json"
MAX_LINE_METRICS = 6
MAX_PAIRS = 6


@dataclass
class Plot:
    file: str  # PNG name inside plots/; an SVG with the same stem sits next to it
    kind: str  # lines | policy | timeline | memmap
    title: str
    caption: str


def check_options(results: Results, by: str | None, metrics: list[str] | None, regime: str | None) -> str | None:
    """Reject unknown --metric names and a --regime that does not name one regime; returns its label."""
    from balloonsim.analysis.plot_timeline import parse_regime

    unknown = [m for m in metrics or [] if m not in results.metrics]
    if unknown:
        raise UserError(
            f"--metric {', '.join(unknown)}: not a metric of this experiment; metrics are " + ", ".join(results.metrics)
        )
    return parse_regime(results, by, regime) if regime else None


def make_plots(
    analysis: Analysis,
    metrics: list[str] | None = None,
    regime: str | None = None,
    svg: bool = False,
    workers: int | None = None,
) -> list[Path]:
    """Draw every applicable figure; returns the PNG paths written.

    Figures are independent, so they are drawn by up to `workers` forked processes (default: two, or one on a
    one-core machine or where fork is unavailable) while this process draws the time line (the only figure
    that reads a file, which stays out of the children). The order of the manifest is the order of the jobs,
    whoever drew them.
    """
    from balloonsim.analysis.plot_factor import factor_figure, x_factors
    from balloonsim.analysis.plot_memmap import memmap_figure
    from balloonsim.analysis.plot_policy import overview_map, pair_map
    from balloonsim.analysis.plot_timeline import choose_regime

    results = analysis.results
    outdir = results.path / PLOTS
    regime_label = check_options(results, analysis.by, metrics, regime)
    _remove_previous(outdir)
    primary = primary_metric(analysis, metrics)
    chosen = metrics or line_metrics(analysis)
    by = analysis.by
    axes = results.other_factors(by)
    jobs: list[tuple[str, Callable, tuple]] = []
    if by is not None:
        for metric, x in itertools.product(chosen, x_factors(results, by)):
            jobs.append(("lines", factor_figure, (analysis, metric, x, outdir, svg)))
        overview = metrics or [m for m in line_metrics(analysis, limit=12)]
        jobs.append(("policy", overview_map, (analysis, overview, outdir, svg)))
        for metric in [m for m in metrics if info(m).better] if metrics else [primary]:
            for rows_f, cols_f in list(itertools.combinations(axes, 2))[:MAX_PAIRS]:
                jobs.append(("policy", pair_map, (analysis, metric, rows_f, cols_f, outdir, svg)))
    jobs.append(("memmap", memmap_figure, (analysis, outdir, svg)))
    timeline = None
    if primary is not None:
        timeline = (analysis, primary, regime_label or choose_regime(analysis, primary), outdir, svg)
    drawn, line = _draw_all(jobs, timeline, workers)
    made: list[Plot] = []
    for (kind, _, _), result in zip(jobs, drawn, strict=True):
        if kind == "memmap":
            _add(made, "timeline", line)  # the time line reads best before the placement bars
        _add(made, kind, result)
    outdir.mkdir(parents=True, exist_ok=True)
    options = {"by": analysis.by, "alpha": analysis.alpha, "metrics": metrics, "regime": regime, "svg": svg}
    index = {"options": options, "figures": [asdict(p) for p in made]}
    (outdir / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return [outdir / p.file for p in made]


_JOBS: list[tuple[str, Callable, tuple]] = []  # what forked children draw (inherited, never pickled)


def _run_job(i: int):
    _, draw, args = _JOBS[i]
    return draw(*args)


def _draw_all(jobs: list, timeline: tuple | None, workers: int | None) -> tuple[list, object]:
    """(the jobs' results in order, the time line's result)."""
    from balloonsim.analysis.plot_timeline import timeline_figure

    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    fork = "fork" in multiprocessing.get_all_start_methods()
    if workers < 2 or not fork or len(jobs) < 2:
        drawn = [draw(*args) for _, draw, args in jobs]
        return drawn, (timeline_figure(*timeline) if timeline else None)
    global _JOBS
    _JOBS = jobs
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            pending = pool.map_async(_run_job, range(len(jobs)), chunksize=1)
            line = timeline_figure(*timeline) if timeline else None
            return pending.get(), line
    finally:
        _JOBS = []


def manifest(path: Path) -> list[Plot] | None:
    """The figures of the last `plot` run, or None when there was none."""
    entries = _index(path).get("figures")
    try:
        return [Plot(**entry) for entry in entries] if isinstance(entries, list) else None
    except TypeError:
        return None


def current(path: Path, by: str | None, alpha: float, svg: bool = False) -> bool:
    """The figures in DIR/plots/ can be reused: drawn with these options, all present, none older than the
    data they show (runs.csv, the time series, the events, metadata.json)."""
    root = Path(path)
    index = _index(root)
    options = index.get("options") or {}
    figures = manifest(root)
    if not figures or options.get("by") != by or options.get("alpha") != alpha or (svg and not options.get("svg")):
        return False
    files = [root / PLOTS / p.file for p in figures]
    if not all(f.is_file() for f in files):
        return False
    return min(f.stat().st_mtime for f in files) >= data_mtime(root)


def _index(path: Path) -> dict:
    index = Path(path) / PLOTS / INDEX
    try:
        data = json.loads(index.read_text()) if index.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    if isinstance(data, list):  # the manifest before options were recorded
        return {"figures": data}
    return data if isinstance(data, dict) else {}


def primary_metric(analysis: Analysis, metrics: list[str] | None = None) -> str | None:
    """The first metric of --metric, else of PRIMARY_ORDER, that differs between strategies (significantly or
    deterministically); failing that, the first that varies at all."""
    varying = varying_metrics(analysis)
    comp = analysis.comparisons
    significant = set(comp.loc[differs(comp), "metric"]) if not comp.empty else set()
    candidates = [*(metrics or []), *([] if metrics else [*analysis.results.primary, *PRIMARY_ORDER])]
    for pool in (significant, set(varying)):
        for m in candidates:
            if m in pool:
                return m
    if metrics:
        return metrics[0]
    return varying[0] if varying else (analysis.results.metrics[0] if analysis.results.metrics else None)


def varying_metrics(analysis: Analysis) -> list[str]:
    runs = analysis.results.runs
    return [m for m in analysis.results.metrics if runs[m].dropna().nunique() > 1]


def line_metrics(analysis: Analysis, limit: int = MAX_LINE_METRICS) -> list[str]:
    """Metrics worth a plot against each factor: varying, with a direction, primary ones first. Placement
    metrics a strategy defines (the memmap figure shows them) and a count a derived share normalises (removable
    blocks: the share of added blocks) are left out unless primary."""
    primary = analysis.results.primary
    varying = set(varying_metrics(analysis))
    shadowed = {num for name, (num, _den) in DERIVED.items() if name in varying}
    ordered = [m for m in dict.fromkeys([*primary, *PRIMARY_ORDER]) if m in varying]
    ordered += [m for m in TABLE if m in varying and m not in ordered and TABLE[m].better]
    return [m for m in ordered if m in primary or not (TABLE.get(m) and TABLE[m].defined_by) and m not in shadowed][
        :limit
    ]


def _add(made: list[Plot], kind: str, result) -> None:
    if result is not None:
        png, title, caption = result
        made.append(Plot(png.name, kind, title, caption))


def _remove_previous(outdir: Path) -> None:
    for plot in manifest(outdir.parent) or []:
        stem = Path(plot.file).stem
        for ext in FORMATS:
            (outdir / f"{stem}.{ext}").unlink(missing_ok=True)

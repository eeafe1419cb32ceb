"""Choose and draw the figures a results directory supports, into DIR/plots/, with a manifest for the report.

What is drawn depends on the data: a factor with one level is never an axis, a metric that is constant is not
plotted against anything, and figures whose columns are missing are skipped with a note instead of failing.
plots/index.json lists each figure with its title and caption and the options it was drawn with; it lets a rerun
remove only its own old files, and `report` reuse figures that are newer than the data instead of redrawing.
Each figure is drawn once, as PNG; SVG copies only on request. The drawing modules (matplotlib) are imported
only by a process that draws: a report that reuses its figures never loads them, and with worker processes the
main one never does.
"""

from __future__ import annotations

import importlib
import itertools
import json
import multiprocessing
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from balloonsim.analysis.compare import differs
from balloonsim.analysis.core import Analysis
from balloonsim.analysis.drawers import Drawers
from balloonsim.analysis.load import DERIVED, Results, data_mtime
from balloonsim.analysis.metrics import PRIMARY_ORDER, TABLE, info
from balloonsim.analysis.timeline import parse_regime, read_timeline, regime_for
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
    """Draw every applicable figure; returns the PNG paths written."""
    with Drawing(analysis.results, analysis.by, metrics, regime, svg, workers) as drawing:
        drawing.add(analysis)
        return drawing.finish()


# drawing function -> its module, imported only by the process that draws (matplotlib is a third of a second)
DRAWERS = {
    "factor_figure": "balloonsim.analysis.plot_factor",
    "memmap_figure": "balloonsim.analysis.plot_memmap",
    "overview_map": "balloonsim.analysis.plot_policy",
    "pair_map": "balloonsim.analysis.plot_policy",
    "draw_timeline": "balloonsim.analysis.plot_timeline",
}


def _draw(name: str, args: tuple):
    return getattr(importlib.import_module(DRAWERS[name]), name)(*args)


def _load_drawers() -> None:
    for module in dict.fromkeys(DRAWERS.values()):
        importlib.import_module(module)


class Drawing:
    """The figures of one results directory, drawn while the caller computes the comparisons.

    Figures are independent, so up to `workers` forked processes draw them (default: two, or none on a one-core
    machine or where fork is unavailable: then this process draws each when it is needed). Begun on the loaded
    results, the workers import matplotlib while the caller finds the time line's metric; `start_timeline`
    queues the time line (the longest figure; its samples are read here, so a worker never reads a file) and
    then what the results alone decide (each metric against each factor, the memmap placement), drawn while
    the caller computes the comparisons; `add` starts the figures that read them, and `finish` waits for all
    and writes the manifest, in the same order whoever drew what.
    """

    def __init__(
        self,
        results: Results,
        by: str | None,
        metrics: list[str] | None = None,
        regime: str | None = None,
        svg: bool = False,
        workers: int | None = None,
    ):
        self.results, self.by, self.metrics, self.regime, self.svg = results, by, metrics, regime, svg
        self.regime_label = check_options(results, by, metrics, regime)  # before anything is touched
        self.outdir = results.path / PLOTS
        _remove_previous(self.outdir)
        workers = min(2, os.cpu_count() or 1) if workers is None else workers
        self._pool: Drawers | None = None
        if workers >= 2 and "fork" in multiprocessing.get_all_start_methods():
            self._pool = Drawers(workers, _load_drawers, _draw)
        self._drawers = workers if self._pool is not None else None  # None: drawn here, as soon as released
        chosen = metrics or line_metrics(results)
        # the figures the results alone decide, queued behind the time line (see _release)
        self._waiting = [("memmap", "memmap_figure", (results, by, self.outdir, svg))]
        if by is not None:
            for metric, x in itertools.product(chosen, x_factors(results, by)):
                self._waiting.append(("lines", "factor_figure", (results, by, metric, x, self.outdir, svg)))
        self._early: list[tuple[str, object]] = []
        self._memmap = None
        self._late: list[tuple[str, object]] = []
        self._timeline = None
        self._timeline_started = False
        self._primary: str | None = None
        self._alpha: float | None = None

    def start_timeline(self, rows_of: Callable[[str], pd.DataFrame]) -> None:
        """Start the time line, the longest figure, as soon as the comparisons of its metric are known:
        `rows_of(metric)` gives them (computed for that metric alone, or read from the table)."""
        rows_of = _cached(rows_of)
        primary = first_differing(self.results, self.metrics, rows_of)
        self._primary, self._timeline_started = primary, True
        if primary is not None:
            regime = self.regime_label or regime_for(self.results, self.by, rows_of(primary), primary)
            shown = read_timeline(self.results, self.by, primary, regime)
            if shown is not None:
                self._timeline = self._submit("draw_timeline", (shown, self.outdir, self.svg))
        self._release(self._drawers)

    def _release(self, count: int | None = None) -> None:
        """Queue (the first `count` of) the figures that wait for nothing. They go in behind the time line, the
        longest figure: started last, it would leave one worker drawing it alone while the other has finished.
        Until `add`, only as many as there are drawers: enough to keep them busy, and the figures `add` starts
        go in before the rest, not after them at the end of the queue."""
        count = len(self._waiting) if count is None else count
        for kind, name, args in self._waiting[:count]:
            pending = self._submit(name, args)
            if kind == "memmap":
                self._memmap = pending
            else:
                self._early.append((kind, pending))
        self._waiting = self._waiting[count:]

    def add(self, analysis: Analysis) -> None:
        """Start the figures that read the comparisons (and the time line, unless started already)."""
        results, metrics, outdir, svg = self.results, self.metrics, self.outdir, self.svg
        self._alpha = analysis.alpha
        comp = analysis.comparisons
        if not self._timeline_started:
            self.start_timeline(lambda m: comp[comp["metric"] == m] if not comp.empty else comp)
        primary = self._primary
        if self.by is not None:
            overview = metrics or line_metrics(results, limit=12)
            self._late.append(("policy", self._submit("overview_map", (analysis, overview, outdir, svg))))
            for metric in [m for m in metrics if info(m).better] if metrics else [primary]:
                for rows_f, cols_f in list(itertools.combinations(results.other_factors(self.by), 2))[:MAX_PAIRS]:
                    args = (analysis, metric, rows_f, cols_f, outdir, svg)
                    self._late.append(("policy", self._submit("pair_map", args)))
        self._release()

    def finish(self) -> list[Path]:
        """Wait for every figure and write the manifest; returns the PNG paths."""
        self._release()
        made: list[Plot] = []
        for kind, pending in [*self._early, *self._late, ("timeline", self._timeline), ("memmap", self._memmap)]:
            _add(made, kind, _result(pending))
        outdir = self.outdir
        outdir.mkdir(parents=True, exist_ok=True)
        options = {"by": self.by, "alpha": self._alpha, "metrics": self.metrics, "regime": self.regime, "svg": self.svg}
        index = {"options": options, "figures": [asdict(p) for p in made]}
        (outdir / INDEX).write_text(json.dumps(index, indent=2) + "\n")
        return [outdir / p.file for p in made]

    def _submit(self, name: str, args: tuple):
        """A pending figure in a worker, or the figure itself when there are none."""
        if self._pool is None:
            return _Done(_draw(name, args))
        return self._pool.submit(name, args)

    def close(self, wait: bool = False) -> None:
        """Stop the drawing processes: once every figure is in (wait), or at once (an error, an interrupt)."""
        if self._pool is not None:
            self._pool.close(wait)
            self._pool = None

    def __enter__(self) -> Drawing:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(wait=exc_type is None)


class _Done:
    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value


def _cached(rows_of: Callable[[str], pd.DataFrame]) -> Callable[[str], pd.DataFrame]:
    seen: dict[str, pd.DataFrame] = {}
    return lambda m: seen[m] if m in seen else seen.setdefault(m, rows_of(m))


def _result(pending):
    return None if pending is None else pending.get()


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


def first_differing(results: Results, metrics: list[str] | None, rows_of: Callable[[str], pd.DataFrame]) -> str | None:
    """The time line's metric: the first of --metric, else of the experiment's primary metrics and PRIMARY_ORDER,
    that differs between strategies (significantly or deterministically); failing that, the first that varies
    at all. `rows_of` gives the comparisons of one candidate at a time, in order, so that the time line can be
    chosen before the whole table is computed."""
    varying = varying_metrics(results)
    candidates = [*(metrics or []), *([] if metrics else [*results.primary, *PRIMARY_ORDER])]
    for m in dict.fromkeys(candidates):
        rows = rows_of(m)
        if not rows.empty and differs(rows).any():
            return m
    for m in candidates:
        if m in varying:
            return m
    if metrics:
        return metrics[0]
    return varying[0] if varying else (results.metrics[0] if results.metrics else None)


def varying_metrics(results: Results) -> list[str]:
    runs = results.runs
    return [m for m in results.metrics if runs[m].dropna().nunique() > 1]


def line_metrics(results: Results, limit: int = MAX_LINE_METRICS) -> list[str]:
    """Metrics worth a plot against each factor: varying, with a direction, primary ones first. Placement
    metrics a strategy defines (the memmap figure shows them) and a count a derived share normalises (removable
    blocks: the share of added blocks) are left out unless primary."""
    primary = results.primary
    varying = set(varying_metrics(results))
    shadowed = {num for name, (num, _den) in DERIVED.items() if name in varying}
    ordered = [m for m in dict.fromkeys([*primary, *PRIMARY_ORDER]) if m in varying]
    ordered += [m for m in TABLE if m in varying and m not in ordered and TABLE[m].better]
    return [m for m in ordered if m in primary or not (TABLE.get(m) and TABLE[m].defined_by) and m not in shadowed][
        :limit
    ]


def x_factors(results: Results, by: str) -> list[str]:
    """Numeric varying factors make x axes; without any, the categorical one with the most levels does."""
    options = results.other_factors(by)
    numeric = [f for f in options if _numeric(results.runs[f])]
    if numeric or not options:
        return numeric
    return [max(options, key=lambda f: len(results.levels(f)))]


def _numeric(col) -> bool:
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def _add(made: list[Plot], kind: str, result) -> None:
    if result is not None:
        png, title, caption = result
        made.append(Plot(png.name, kind, title, caption))


def _remove_previous(outdir: Path) -> None:
    for plot in manifest(outdir.parent) or []:
        stem = Path(plot.file).stem
        for ext in FORMATS:
            (outdir / f"{stem}.{ext}").unlink(missing_ok=True)

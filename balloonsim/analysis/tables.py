"""Compact tables for the report: key metrics per strategy per regime, and the best strategy per regime.

The full numbers live in summary.csv and comparisons.csv; these tables keep to the few metrics that vary and
answer the thread's questions, so a reader sees the pattern without scrolling through every column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from balloonsim.analysis.best import best_cell
from balloonsim.analysis.compare import differs, pair_rows, regime_labels, regime_order
from balloonsim.analysis.core import Analysis
from balloonsim.analysis.document import Table
from balloonsim.analysis.labels import level_text
from balloonsim.analysis.metrics import fmt, info, is_rate
from balloonsim.analysis.stats import interval

MAX_ROWS = 60


def summary_table(analysis: Analysis, metrics: list[str]) -> Table | None:
    """Rows: regime x strategy; cells: mean and 95% CI of each key metric."""
    results, by = analysis.results, analysis.by
    if not metrics:
        return None
    runs = results.runs.assign(_regime=regime_labels(results, by))
    keys = ["_regime"] + ([by] if by else [])
    rates = {m: is_rate(m, runs[m]) for m in metrics}
    rows = []
    order = {r: i for i, r in enumerate(regime_order(results, by))}
    level_order = {str(v): i for i, v in enumerate(results.levels(by))} if by else {}
    groups = [((k if isinstance(k, tuple) else (k,)), g) for k, g in runs.groupby(keys, sort=False, dropna=False)]
    groups.sort(key=lambda kg: (order[kg[0][0]], level_order.get(str(kg[0][-1]), 0) if by else 0))
    for key, group in groups:
        cells = [str(key[0])] + ([level_text(by, key[1])] if by else []) + [str(len(group))]
        for m in metrics:
            values = group[m].to_numpy(dtype=float)
            values = values[~np.isnan(values)]
            cells.append(_mean_ci(m, values, rates[m]))
        rows.append(cells)
    header = ["regime"] + ([by] if by else []) + ["runs"] + [_header(m) for m in metrics]
    note = "Mean per run with its 95% confidence interval (t-interval; Wilson for rates)."
    if len(rows) > MAX_ROWS:
        note += f" First {MAX_ROWS} of {len(rows)} rows; every combination is in summary.csv."
        rows = rows[:MAX_ROWS]
    if all(r[0] == "all runs" for r in rows):
        header, rows = header[1:], [r[1:] for r in rows]
    return Table(header, rows, note)


def best_table(analysis: Analysis, metrics: list[str]) -> Table | None:
    """Rows: regimes; cells: the best strategy on each metric, marked when it beats every other after
    Holm."""
    results, by = analysis.results, analysis.by
    metrics = [m for m in metrics if info(m).better]
    if by is None or not metrics or analysis.comparisons.empty:
        return None
    labels = regime_labels(results, by)
    regimes = regime_order(results, by)
    if len(regimes) > MAX_ROWS:
        return None
    comp = analysis.comparisons
    rows = []
    for regime in regimes:
        part = results.runs[labels == regime]
        cells = [regime]
        for m in metrics:
            samples = {level_text(by, k): g[m].dropna().to_numpy(dtype=float) for k, g in part.groupby(by, sort=False)}
            samples = {k: v for k, v in samples.items() if len(v)}
            cell = best_cell(samples, m, analysis.alpha, lambda best, second: False)
            if cell.best is None:
                cells.append(cell.note or "–")
            else:
                beats_all = _beats_all(comp, m, regime, cell.best, samples)
                cells.append(f"**{cell.best}** ✓" if beats_all else cell.best)
        rows.append(cells)
    header = ["regime"] + [f"{info(m).label} ({info(m).better} is better)" for m in metrics]
    note = (
        f"Best mean per regime. **Bold ✓**: better than every other {by}, significantly after Holm "
        "correction or deterministically (identical runs on each side); "
        "plain: best mean, but not clearly better than all others."
    )
    return Table(header, rows, note)


def _beats_all(comp: pd.DataFrame, metric: str, regime: str, best: str, samples: dict) -> bool:
    for other in samples:
        if other == best:
            continue
        pair = pair_rows(comp, metric, regime, best, other)
        if pair.empty or not bool(differs(pair).iloc[0]):
            return False
        if str(pair["winner"].iloc[0]) != best:
            return False
    return True


def _mean_ci(metric: str, values: np.ndarray, rate: bool) -> str:
    if len(values) == 0:
        return "–"
    mean = float(values.mean())
    lo, hi = interval(values, rate)
    if np.isnan(lo) or lo == hi:
        return fmt(metric, mean)
    if values.min() >= 0:
        lo = max(lo, 0.0)
    return f"{fmt(metric, mean)} ({fmt(metric, lo)}–{fmt(metric, hi)})"


def _header(metric: str) -> str:
    """The label only: every cell carries its unit (MiB, s, %)."""
    return info(metric).label

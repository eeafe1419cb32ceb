"""Compact tables for the report: key metrics per strategy per regime, and the best strategy per regime.

The full numbers live in summary.csv and comparisons.csv; these tables keep to the few metrics that vary and
answer the thread's questions, so a reader sees the pattern without scrolling through every column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from balloonsim.analysis.best import dominance, level_groups
from balloonsim.analysis.compare import differs_index, regime_labels, regime_order
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
        alive = int(results.alive.loc[group.index].sum())
        for m in metrics:
            values = group[m].to_numpy(dtype=float)
            values = values[~np.isnan(values)]
            if len(values) == 0 and alive == 0 and not info(m).survival:
                cells.append("† no survivors")
                continue
            cell = _mean_ci(m, values, rates[m])
            cells.append(cell if len(values) in (0, len(group)) else f"{cell} [n = {len(values)}]")
        rows.append(cells)
    header = ["regime"] + ([by] if by else []) + ["runs"] + [_header(m) for m in metrics]
    note = (
        "Mean per run with its 95% confidence interval (t-interval; Wilson for rates), over the runs whose guest "
        "survived; [n = …] when fewer runs than the row's were used."
    )
    if len(rows) > MAX_ROWS:
        note += f" First {MAX_ROWS} of {len(rows)} rows; every combination is in summary.csv."
        rows = rows[:MAX_ROWS]
    if all(r[0] == "all runs" for r in rows):
        header, rows = header[1:], [r[1:] for r in rows]
    return Table(header, rows, note)


def best_table(analysis: Analysis, metrics: list[str]) -> Table | None:
    """Rows: regimes; cells: the levels no other level beats on each metric (several: tied for best), marked
    when they beat every other level after Holm (or deterministically)."""
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
    all_alive = results.alive.to_numpy()
    for regime in regimes:
        mask = (labels == regime).to_numpy()
        groups = level_groups(results.runs[by], mask)
        alive = all_alive[mask]
        cells = [regime]
        for m in metrics:
            samples = {}
            dead = []
            column = results.runs[m].to_numpy(dtype=float)[mask]
            for k, at in groups:
                values = column[at]
                values = values[~np.isnan(values)]
                if len(values):
                    samples[level_text(by, k)] = values
                elif not info(m).survival and not alive[at].any():
                    dead.append(level_text(by, k))
            verdict = dominance(samples, m, analysis.alpha, _holm(comp, m, regime), dead)
            cells.append(_verdict_text(verdict))
        rows.append(cells)
    header = ["regime"] + [f"{info(m).label} ({info(m).better} is better)" for m in metrics]
    note = (
        f"The {by} levels no other level beats (several: tied for best). **Bold ✓**: better than every other "
        f"{by}, significantly after Holm correction or deterministically (identical runs on each side); plain: "
        "best, but not clearly better than every other; †: no surviving run, not ranked."
    )
    return Table(header, rows, note)


def _verdict_text(verdict) -> str:
    dead = f" († {', '.join(verdict.dead)})" if verdict.dead else ""
    if not verdict.top:
        return ("no survivors" if verdict.dead else "–") + dead
    if not verdict.differs:
        if len(verdict.top) == 1:
            return verdict.top[0] + dead
        return ("all equal" if verdict.equal else "no clear difference") + dead
    names = " = ".join(verdict.top)
    return (f"**{names}** ✓" if verdict.beats_all else names) + dead


def _holm(comp: pd.DataFrame, metric: str, regime: str):
    index = differs_index(comp)
    return lambda a, b: index.get((metric, regime, frozenset((a, b))), False)


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

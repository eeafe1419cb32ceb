"""Policy maps: which strategy is best in each cell, coloured by strategy and annotated with the margin.

Two shapes: a pair of factors for one metric (cells pooled over the other factors), and an overview with one
row per metric and one column per regime. A strong colour means the best strategy is significantly better than
the runner-up (Holm-corrected comparison for regimes; Mann-Whitney p < alpha, uncorrected, for pooled cells);
a pale colour means it is not; grey means a tie. A deterministic difference (every run of each side identical,
the values different) counts as significant.
"""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from balloonsim.analysis import plotstyle as ps
from balloonsim.analysis.best import Cell, Significance, best_cell
from balloonsim.analysis.compare import (
    differs,
    pair_rows,
    regime_factors,
    regime_label,
    regime_labels,
    regime_order,
)
from balloonsim.analysis.core import Analysis
from balloonsim.analysis.labels import labels_of
from balloonsim.analysis.metrics import fmt, info

TIE = "#d9d9d9"


def pair_map(analysis: Analysis, metric: str, rows_f: str, cols_f: str, outdir: Path) -> tuple[Path, str, str] | None:
    """Best strategy per (rows_f, cols_f) cell for `metric`, pooled over the other factors."""
    results, by = analysis.results, analysis.by
    runs = results.runs
    if info(metric).better is None or metric not in runs:
        return None
    row_levels, col_levels = results.levels(rows_f), results.levels(cols_f)
    pooled = results.other_factors(by, rows_f, cols_f)
    cells = {}
    for r, c in itertools.product(row_levels, col_levels):
        part = runs[(runs[rows_f] == r) & (runs[cols_f] == c)]
        significance = None
        if not pooled:  # each cell is one regime: use the Holm-corrected comparison
            regime = regime_label({rows_f: r, cols_f: c}, regime_factors(results, by)[1])
            significance = _holm_for(analysis.comparisons, metric, regime)
        cells[(r, c)] = _with_crashes(
            best_cell(_samples(part, by, metric), metric, analysis.alpha, significance), part, by, metric
        )
    title = f"Best {by} for {info(metric).label}"
    labels_r = [ps.level_text(rows_f, v) for v in row_levels]
    labels_c = [ps.wrap(ps.level_text(cols_f, v)) for v in col_levels]
    grid = [[cells[(r, c)] for c in col_levels] for r in row_levels]
    stem = f"policy_{ps.safe_stem(metric)}_{ps.safe_stem(rows_f)}_x_{ps.safe_stem(cols_f)}"
    png = _draw(
        analysis,
        grid,
        labels_r,
        labels_c,
        [metric] * len(row_levels),
        ps.factor_label(rows_f),
        ps.factor_label(cols_f),
        title,
        outdir,
        stem,
    )
    test = (
        f"Mann-Whitney, uncorrected p ≥ {analysis.alpha:g}"
        if pooled
        else f"Holm-corrected p ≥ {analysis.alpha:g}, comparisons.csv"
    )
    test += ", and not a deterministic difference"
    caption = (
        f"Each cell names the {by} with the best mean {info(metric).label} ({info(metric).better} is "
        f"better) and its margin over the runner-up. Pale: not significantly better than the runner-up "
        f"({test}); grey: tie."
    )
    caption += f" Pooled over {', '.join(pooled)}." if pooled else ""
    return png, title, caption


MAX_REGIME_COLUMNS = 12


def overview_map(analysis: Analysis, metrics: list[str], outdir: Path) -> tuple[Path, str, str] | None:
    """One row per metric, one column per regime (or per level of one factor when regimes are too many)."""
    results, by = analysis.results, analysis.by
    metrics = [m for m in metrics if info(m).better is not None and m in results.runs]
    if not metrics:
        return None
    labels = regime_labels(results, by)
    regimes = regime_order(results, by)
    comp = analysis.comparisons
    if len(regimes) <= MAX_REGIME_COLUMNS:
        columns = [(r, labels == r) for r in regimes]
        named_by = regime_factors(results, by)[1]
        col_title = " / ".join(named_by) if named_by else "all runs"
        col_names = _regime_values(results.runs, labels, regimes, named_by)

        def sig_for(metric, regime):
            return _holm_for(comp, metric, regime)
    else:
        factor = min(results.other_factors(by), key=lambda f: len(results.levels(f)))
        levels = results.levels(factor)
        columns = [(lv, results.runs[factor] == lv) for lv in levels]
        col_title = f"{factor} (other factors pooled)"
        col_names = [ps.wrap(ps.level_text(factor, lv)) for lv in levels]

        def sig_for(metric, regime):
            return None

    grid = []
    for metric in metrics:
        row = []
        for key, mask in columns:
            samples = _samples(results.runs[mask], by, metric)
            cell = best_cell(samples, metric, analysis.alpha, sig_for(metric, key))
            row.append(_with_crashes(cell, results.runs[mask], by, metric))
        grid.append(row)
    row_names = [info(m).label for m in metrics]
    title = f"Best {by} per metric and regime"
    png = _draw(analysis, grid, row_names, col_names, metrics, "", col_title, title, outdir, "policy_overview")
    caption = (
        f"Each cell names the {by} with the best mean and its margin over the runner-up "
        "(in the metric's unit). "
        "Strong colour: better than the runner-up, deterministically (identical runs on each side) or "
        "significantly "
        + (
            "after Holm correction (comparisons.csv); "
            if len(regimes) <= MAX_REGIME_COLUMNS
            else f"(Mann-Whitney, uncorrected p < {analysis.alpha:g}); "
        )
        + "pale: not significant; grey: tie."
    )
    return png, title, caption


def _draw(analysis, grid, row_names, col_names, row_metrics, ylabel, xlabel, title, outdir, stem) -> Path:
    strategies = [ps.level_text(analysis.by, s) for s in analysis.results.levels(analysis.by)]
    colour = ps.colours(strategies)
    n_rows, n_cols = len(grid), len(grid[0])
    image = np.ones((n_rows, n_cols, 3))
    for i, j in itertools.product(range(n_rows), range(n_cols)):
        cell = grid[i][j]
        if cell.best is None:
            image[i, j] = ps.pale(TIE, 0.0)
        else:
            base = colour[str(cell.best)]
            image[i, j] = ps.pale(base, 0.0) if cell.significant else ps.pale(base, 0.7)
    longest = max(len(line) for c in col_names for line in c.split("\n"))
    cell_w = max(1.25, longest * 0.075 + 0.4)
    width = min(22.0, 2.2 + cell_w * n_cols + max(len(r) for r in row_names) * 0.07)
    texts = [[_cell_text(grid[i][j], row_metrics[i]) for j in range(n_cols)] for i in range(n_rows)]
    lines = max(t.count("\n") + 1 for row in texts for t in row)  # a long tie list needs taller rows
    height = 1.9 + max(0.62, 0.14 * lines + 0.1) * n_rows
    with ps.style():
        fig = ps.figure(width, height)
        ax = fig.subplots()
        ax.imshow(image, aspect="auto", interpolation="nearest")
        ax.grid(False)
        for i, j in itertools.product(range(n_rows), range(n_cols)):
            ax.text(j, i, texts[i][j], ha="center", va="center", fontsize=8, color=ps.text_colour(tuple(image[i, j])))
        ax.set_xticks(range(n_cols), col_names, fontsize=8)
        ax.set_yticks(range(n_rows), row_names)
        ax.set_xticks(np.arange(-0.5, n_cols), minor=True)
        ax.set_yticks(np.arange(-0.5, n_rows), minor=True)
        ax.grid(which="minor", color="white", linewidth=2)
        ax.tick_params(which="minor", length=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        for side in ("top", "right", "left", "bottom"):
            ax.spines[side].set_visible(False)
        handles = [Patch(color=colour[s], label=s) for s in strategies]
        handles += [
            Patch(color=ps.pale(colour[strategies[0]], 0.7), label="pale shade: not significantly better"),
            Patch(color=TIE, label="tie"),
        ]
        if any(cell.note.startswith("†") for row in grid for cell in row):
            handles.append(Patch(color="white", label="†: the winner's guests crashed; measured up to the crash"))
        entry = max(len(h.get_label()) for h in handles) * 0.07 + 0.5  # inches per legend column
        ncols = max(1, min(len(handles), 6, int((width - 0.3) // entry)))
        fig.legend(handles=handles, loc="outside lower center", ncols=ncols, frameon=False)
        fig.suptitle(ps.wrap(title, int(width * 9)), fontweight="bold")
        return ps.save(fig, outdir, stem)


def _cell_text(cell: Cell, metric: str) -> str:
    if cell.best is None:
        if not cell.note:
            return "–"
        text = textwrap.fill(cell.note, 18, break_on_hyphens=False).replace(": ", ":\n", 1)
        return text + (f"\nby {fmt(metric, cell.margin)} vs {cell.runner_up}" if cell.runner_up else "")
    note = f"\n{cell.note}" if cell.note else ""
    if cell.runner_up is None:
        return f"{ps.wrap(cell.best)}{note}"
    return f"{ps.wrap(cell.best)}\nby {fmt(metric, cell.margin)}\nvs {ps.wrap(cell.runner_up)}{note}"


def _with_crashes(cell: Cell, part: pd.DataFrame, by: str, metric: str) -> Cell:
    """Mark a winner whose guests crashed: its other metrics stop at the crash, which can flatter it."""
    if cell.best is None or "guest_crashed" not in part or metric in ("guest_crashed", "crash_time_s"):
        return cell
    rate = part.loc[labels_of(part[by], by) == cell.best, "guest_crashed"].mean()
    if rate > 0:
        cell.note = f"† {rate * 100:.0f}% crashed"
    return cell


def _samples(part: pd.DataFrame, by: str, metric: str) -> dict[str, np.ndarray]:
    out = {}
    for level, group in part.groupby(by, sort=False):
        values = group[metric].to_numpy(dtype=float)
        values = values[~np.isnan(values)]
        if len(values):
            out[ps.level_text(by, level)] = values
    return out


def _holm_for(comp: pd.DataFrame, metric: str, regime: str) -> Significance:
    return lambda best, second: _holm_significant(comp, metric, regime, best, second)


def _holm_significant(comp: pd.DataFrame, metric: str, regime: str, best: str, second: str) -> bool:
    """Significant after Holm, or deterministic, in comparisons.csv."""
    pair = pair_rows(comp, metric, regime, best, second)
    return bool(len(pair)) and bool(differs(pair).iloc[0])


def _regime_values(runs: pd.DataFrame, labels: pd.Series, regimes: list[str], named_by: list[str]) -> list[str]:
    """Column names: each regime's levels, one per line ('xen\n5'); the axis label names the factors once."""
    if not named_by:
        return ["all runs" for _ in regimes]
    first: dict[str, dict] = {}
    for label, row in zip(labels, runs[named_by].to_dict("records"), strict=True):
        first.setdefault(label, row)
    return ["\n".join(ps.wrap(ps.level_text(f, first[r][f])) for f in named_by) for r in regimes]

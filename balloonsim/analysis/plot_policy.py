"""Policy maps: who wins each cell, by dominance, with the margin of the best over the worst.

Two shapes: a pair of factors for one metric (cells pooled over the other factors), and an overview with one
row per metric and one column per regime. A cell is coloured by the levels no other level beats (stripes when
several tie for best), shaded by the margin of the best over the worst (pale: a small relative margin; strong:
large), and framed in black when that difference is deterministic (every run of both sides identical). Grey
means nothing differs. "Beats" means significant after Holm, or deterministic, in comparisons.csv, per regime,
so a figure never says what the report does not. A cell that pools several regimes shows a verdict only when its
regimes agree (the same levels best in every one, or no difference in any); when some differ and others do not,
or different levels win, it is hatched "differs by regime" with the count, as the report says "in N regimes".
Levels whose guests all died in a cell are not ranked there (a metric stops at the death) and are named under
the margin.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.patches import Patch, Rectangle

from balloonsim.analysis import plotstyle as ps
from balloonsim.analysis.best import Significance, Verdict, dominance, level_groups
from balloonsim.analysis.compare import (
    differs,
    differs_index,
    pair_rows,
    regime_factors,
    regime_labels,
    regime_order,
)
from balloonsim.analysis.core import Analysis
from balloonsim.analysis.metrics import fmt, info

TIE = "#d9d9d9"
MIN_SHADE = 0.35  # the weakest colour a real difference gets (white would read as "nothing")
BY_REGIME = "#f2f2f2"  # with a hatch: the pooled regimes disagree
HATCH = "////"


@dataclass
class ByRegime:
    """A cell pooling regimes that disagree: a real difference in `differing` of `regimes`, won by `winners`."""

    differing: int
    regimes: int
    winners: list[str]


def pair_map(
    analysis: Analysis, metric: str, rows_f: str, cols_f: str, outdir: Path, svg: bool = False
) -> tuple[Path, str, str] | None:
    """Dominance per (rows_f, cols_f) cell for `metric`, pooled over the other factors."""
    results, by = analysis.results, analysis.by
    runs = results.runs
    if info(metric).better is None or metric not in runs:
        return None
    row_levels, col_levels = results.levels(rows_f), results.levels(cols_f)
    pooled = results.other_factors(by, rows_f, cols_f)
    labels = regime_labels(results, by)
    grid = [
        [
            _regime_verdict(analysis, ((runs[rows_f] == r) & (runs[cols_f] == c)).to_numpy(), metric, labels)
            for c in col_levels
        ]
        for r in row_levels
    ]
    title = f"Best {by} for {info(metric).label}"
    labels_r = [ps.level_text(rows_f, v) for v in row_levels]
    labels_c = [ps.wrap(ps.level_text(cols_f, v)) for v in col_levels]
    stem = f"policy_{ps.safe_stem(metric)}_{ps.safe_stem(rows_f)}_x_{ps.safe_stem(cols_f)}"
    png = _draw(
        analysis,
        grid,
        labels_r,
        labels_c,
        [metric] * len(row_levels),
        (ps.factor_label(rows_f), ps.factor_label(cols_f)),
        title,
        outdir / f"{stem}",
        svg,
    )
    caption = _caption(analysis, f"{info(metric).label} ({info(metric).better} is better)", pooled)
    return png, title, caption


MAX_REGIME_COLUMNS = 12


def overview_map(
    analysis: Analysis, metrics: list[str], outdir: Path, svg: bool = False
) -> tuple[Path, str, str] | None:
    """One row per metric, one column per regime (or per level of one factor when regimes are too many)."""
    results, by = analysis.results, analysis.by
    metrics = [m for m in metrics if info(m).better is not None and m in results.runs]
    if not metrics:
        return None
    labels = regime_labels(results, by)
    regimes = regime_order(results, by)
    pooled: list[str] = []
    if len(regimes) <= MAX_REGIME_COLUMNS:
        columns = [(labels == r).to_numpy() for r in regimes]
        named_by = regime_factors(results, by)[1]
        col_title = " / ".join(named_by) if named_by else "all runs"
        col_names = _regime_values(results.runs, labels, regimes, named_by)
    else:
        factor = min(results.other_factors(by), key=lambda f: len(results.levels(f)))
        levels = results.levels(factor)
        columns = [(results.runs[factor] == lv).to_numpy() for lv in levels]
        pooled = results.other_factors(by, factor)
        col_title = f"{factor} (the regimes of each level together)"
        col_names = [ps.wrap(ps.level_text(factor, lv)) for lv in levels]
    grid = [[_regime_verdict(analysis, mask, m, labels) for mask in columns] for m in metrics]
    row_names = [ps.wrap(info(m).label, 28) for m in metrics]
    title = f"Best {by} per metric and regime"
    png = _draw(analysis, grid, row_names, col_names, metrics, ("", col_title), title, outdir / "policy_overview", svg)
    return png, title, _caption(analysis, "each metric", pooled)


def _caption(analysis: Analysis, what: str, pooled: list[str]) -> str:
    by = analysis.by
    text = (
        f"Each cell names the {by} levels no other level beats on {what} (several: tied for best, drawn as "
        f"stripes), the worst levels they beat, and the margin of the best mean over the worst. The stronger the "
        f"colour, the larger that margin relative to the values (for a rate: in points). Black frame: the "
        f"difference is deterministic (every run of both sides identical). Grey: no level beats another "
        "(Holm-corrected per regime, comparisons.csv; a deterministic difference always counts). †: levels whose "
        "guests all died in that cell, not ranked."
    )
    if pooled:
        text += (
            f" A cell holds every regime of {', '.join(pooled)}: it shows a verdict only when they agree; hatched: "
            "some regimes show a difference and others none, or other levels win (differs by regime)."
        )
    return text


def _regime_verdict(analysis: Analysis, mask: np.ndarray, metric: str, labels: pd.Series) -> Verdict | ByRegime:
    """The verdict of the regimes under `mask`, each judged by its own Holm-corrected comparisons.

    One regime: its verdict. Several: the pooled verdict when every regime agrees (the same best levels in each,
    or no difference in any), else ByRegime."""
    comp = analysis.comparisons
    regimes = list(pd.unique(labels[mask]))
    each = [_verdict(analysis, mask & (labels == r).to_numpy(), metric, _holm_for(comp, metric, r)) for r in regimes]
    if len(each) == 1:
        return each[0]
    differing = [v for v in each if v.differs]
    if not differing:
        return _verdict(analysis, mask, metric, lambda a, b: False)
    tops = {frozenset(v.top) for v in differing}
    if len(differing) == len(each) and len(tops) == 1:
        everywhere = [_holm_for(comp, metric, r) for r in regimes]
        pooled = _verdict(analysis, mask, metric, lambda a, b: all(rule(a, b) for rule in everywhere))
        if pooled.differs and frozenset(pooled.top) in tops:
            return pooled
    winners = list(dict.fromkeys(level for v in differing for level in v.top))
    return ByRegime(len(differing), len(each), winners)


def _verdict(analysis: Analysis, mask, metric: str, significance: Significance | None) -> Verdict:
    results, by = analysis.results, analysis.by
    mask = np.asarray(mask, dtype=bool)
    values = results.runs[metric].to_numpy(dtype=float)[mask]
    alive = results.alive.to_numpy()[mask]
    samples, dead = {}, []
    for level, at in level_groups(results.runs[by], mask):
        own = values[at]
        own = own[~np.isnan(own)]
        if len(own):
            samples[ps.level_text(by, level)] = own
        if not info(metric).survival and not alive[at].any():
            dead.append(ps.level_text(by, level))
    return dominance(samples, metric, analysis.alpha, significance, dead)


def _draw(analysis, grid, row_names, col_names, row_metrics, axis_titles, title, target: Path, svg) -> Path:
    by = analysis.by
    strategies = [ps.level_text(by, s) for s in analysis.results.levels(by)]
    colour = ps.colours(strategies, by)
    n_rows, n_cols = len(grid), len(grid[0])
    texts = [[_cell_text(grid[i][j], row_metrics[i]) for j in range(n_cols)] for i in range(n_rows)]
    longest = max([len(line) for c in col_names for line in c.split("\n")] + [12])
    widest_text = max(len(line) for row in texts for t in row for line in t.split("\n"))
    cell_w = max(1.25, max(longest, widest_text) * 0.068 + 0.3)
    label_w = max(len(line) for r in row_names for line in r.split("\n")) * 0.075 + 0.4
    width = min(ps.MAX_WIDTH_IN, 1.0 + cell_w * n_cols + label_w)
    lines = max(t.count("\n") + 1 for row in texts for t in row)
    height = 2.4 + max(0.62, 0.15 * lines + 0.12) * n_rows
    with ps.style():
        fig = ps.figure(width, height)
        ax = fig.subplots()
        ax.set_xlim(-0.5, n_cols - 0.5)
        ax.set_ylim(n_rows - 0.5, -0.5)
        ax.grid(False)
        for i, j in itertools.product(range(n_rows), range(n_cols)):
            under = _paint(ax, grid[i][j], i, j, colour)
            ax.text(j, i, texts[i][j], ha="center", va="center", fontsize=7.5, **_label_style(under))
        ax.set_xticks(range(n_cols), col_names, fontsize=8)
        ax.set_yticks(range(n_rows), row_names)
        ax.tick_params(length=0)
        ax.set_ylabel(axis_titles[0])
        ax.set_xlabel(axis_titles[1])
        for side in ("top", "right", "left", "bottom"):
            ax.spines[side].set_visible(False)
        handles = [Patch(color=colour[s], label=s) for s in strategies]
        handles += [
            Patch(
                color=ps.pale(colour[strategies[0]], 1 - MIN_SHADE),
                label=f"pale (here {strategies[0]}): small margin",
            ),
            Patch(facecolor="white", edgecolor="black", linewidth=2, label="frame: deterministic"),
            Patch(color=TIE, label="grey: no difference"),
        ]
        if any(isinstance(cell, ByRegime) for row in grid for cell in row):
            handles.append(
                Patch(
                    facecolor=BY_REGIME,
                    edgecolor="#b0b0b0",
                    hatch=HATCH,
                    linewidth=0,
                    label="hatched: differs by regime",
                )
            )
        entry = max(len(h.get_label()) for h in handles) * 0.07 + 0.5  # inches per legend column
        ncols = max(1, min(len(handles), 7, int((width - 0.3) // entry)))
        fig.legend(handles=handles, loc="outside lower center", ncols=ncols, frameon=False)
        fig.suptitle(ps.wrap(title, int(width * 9)), fontweight="bold")
        return ps.save(fig, target.parent, target.name, svg)


def _label_style(under: list[tuple[float, float, float]]) -> dict:
    """Text colour for the colours a cell's text spans: the one that reads on all of them, or black on a light box
    when the stripes under it are some light and some dark."""
    colours = {ps.text_colour(rgb) for rgb in under}
    if len(colours) == 1:
        return {"color": colours.pop()}
    return {"color": "black", "bbox": {"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1.5}}


def _paint(ax, cell: Verdict | ByRegime, i: int, j: int, colour: dict[str, str]) -> list[tuple[float, float, float]]:
    """Fill one cell (stripes for a shared top); returns the colours the text sits on."""
    if isinstance(cell, ByRegime):
        rgb = ps.pale(BY_REGIME, 0.0)
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor=rgb, edgecolor="#b0b0b0", hatch=HATCH, linewidth=0))
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="white", linewidth=2))
        return [rgb]
    if not cell.differs:
        rgb = ps.pale(TIE, 0.0)
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor=rgb, edgecolor="white", linewidth=2))
        return [rgb]
    strength = MIN_SHADE + (1 - MIN_SHADE) * cell.relative
    shades = [ps.pale(colour.get(s, TIE), 1 - strength) for s in cell.top]
    width = 1.0 / len(shades)
    for k, rgb in enumerate(shades):
        ax.add_patch(Rectangle((j - 0.5 + k * width, i - 0.5), width, 1, facecolor=rgb, linewidth=0))
    edge = "black" if cell.deterministic else "white"
    ax.add_patch(
        Rectangle((j - 0.47, i - 0.47), 0.94, 0.94, fill=False, edgecolor=edge, linewidth=2.2 if edge == "black" else 0)
    )
    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="white", linewidth=2))
    return shades  # the text spans every stripe


def _cell_text(cell: Verdict | ByRegime, metric: str) -> str:
    if isinstance(cell, ByRegime):
        return (
            f"differs by regime:\n{ps.wrap(' / '.join(cell.winners), 20)} best\n"
            f"in {cell.differing} of {cell.regimes} regimes"
        )
    dead = f"\n† {', '.join(cell.dead)}" if cell.dead else ""
    if not cell.top:
        return "no survivors" + dead if cell.dead else "–"
    if not cell.differs:
        if len(cell.top) == 1:
            return ps.wrap(cell.top[0]) + dead
        return ("all equal" if cell.equal else "no clear\ndifference") + dead
    beaters = cell.winners or cell.top  # a level tied with the best need not beat the worst itself
    names = " = ".join(beaters)
    verb = "beats" if len(beaters) == 1 else "beat"
    worst = ", ".join(cell.bottom or [str(cell.worst)])
    return f"{ps.wrap(names, 20)}\n{verb} {ps.wrap(worst, 24)}\nby {fmt(metric, cell.margin)}{dead}"


def _holm_for(comp: pd.DataFrame, metric: str, regime: str) -> Significance:
    """Pairwise rule of one regime's cell: significant after Holm, or deterministic, in comparisons.csv."""
    index = differs_index(comp)
    return lambda best, second: index.get((metric, regime, frozenset((best, second))), False)


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

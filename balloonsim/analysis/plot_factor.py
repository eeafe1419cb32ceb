"""A metric against one factor, one line per strategy with its 95% CI band, faceted by a small factor.

This is the "how does the answer change with the regime" view: e.g. OOM kills against the onlining delay,
one panel per driver. Factors neither on the x axis nor faceted are pooled (and the caption says so).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from balloonsim.analysis import plotstyle as ps
from balloonsim.analysis.metrics import axis_label, info, is_rate
from balloonsim.analysis.stats import interval

MAX_FACETS = 4
MAX_WIDTH = 11.0  # inches of panels before categorical tick labels are slanted rather than wrapped


def x_factors(results, by: str) -> list[str]:
    """Numeric varying factors make x axes; without any, the categorical one with the most levels does."""
    options = results.other_factors(by)
    numeric = [f for f in options if _numeric(results.runs[f])]
    if numeric or not options:
        return numeric
    return [max(options, key=lambda f: len(results.levels(f)))]


def _numeric(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def choose_facet(results, by: str, x: str) -> str | None:
    """The varying factor with the fewest levels (at most MAX_FACETS), preferring non-numeric ones."""
    options = results.other_factors(by, x)
    options = [f for f in options if len(results.levels(f)) <= MAX_FACETS]
    if not options:
        return None
    return min(options, key=lambda f: (len(results.levels(f)), pd.api.types.is_numeric_dtype(results.runs[f])))


def x_positions(results, x: str) -> tuple[dict, list[str], bool]:
    """Level -> x position, tick labels, and whether the axis is numeric (linear in the level's value)."""
    levels = results.levels(x)
    numeric = pd.api.types.is_numeric_dtype(results.runs[x]) and not pd.api.types.is_bool_dtype(results.runs[x])
    numeric = numeric and not any(pd.isna(v) for v in levels)
    if numeric and len(levels) > 1:
        lo, hi = float(min(levels)), float(max(levels))
        spread_ok = lo <= 0 or hi / lo <= 20
        if spread_ok:
            return {lv: float(lv) for lv in levels}, [ps.level_text(x, lv) for lv in levels], True
    return {lv: float(i) for i, lv in enumerate(levels)}, [ps.wrap(ps.level_text(x, lv), 12) for lv in levels], False


def factor_figure(analysis, metric: str, x: str, outdir: Path) -> tuple[Path, str, str] | None:
    """Draw and save one figure; returns (png, title, caption) or None when there is nothing to draw."""
    results, by = analysis.results, analysis.by
    runs = results.runs
    if metric not in runs or runs[metric].dropna().empty:
        return None
    facet = choose_facet(results, by, x)
    facet_levels = results.levels(facet) if facet else [None]
    strategies = results.levels(by)
    colour, marker = ps.colours(strategies), ps.markers(strategies)
    pos, ticks, numeric = x_positions(results, x)
    rate = is_rate(metric, runs[metric])
    ylabel, scale = axis_label(metric, float(np.nanmax(np.abs(runs[metric].to_numpy(dtype=float)))))
    if rate:
        scale = 0.01
    m = info(metric)
    # Categorical axes with many or long labels need room (about 0.07 in per character of a tick's widest line);
    # when that would make the figure too wide, the labels are written on one slanted line instead.
    per_tick = max(0.55, 0.07 * max(len(line) for t in ticks for line in t.split("\n")) + 0.15)
    panel = max(3.9, per_tick * len(ticks) + 0.8) if not numeric else 3.9
    slant = not numeric and panel * len(facet_levels) > MAX_WIDTH
    height = 3.9 + 0.16 * max(t.count("\n") for t in ticks)
    if slant:
        ticks = [t.replace("\n", " ") for t in ticks]
        panel = max(3.9, 0.75 * len(ticks) + 0.8)
        height = 3.9 + 0.04 * max(len(t) for t in ticks)
    width = max(5.0, panel * len(facet_levels) + 1.6)
    with ps.style():
        fig = ps.figure(width, height)
        share = rate or _share_y(runs, metric, facet, facet_levels)
        axes = fig.subplots(1, len(facet_levels), sharey=share, squeeze=False)[0]
        for ax, fl in zip(axes, facet_levels, strict=True):
            part = runs if facet is None else runs[_eq(runs[facet], fl)]
            _draw_lines(ax, part, metric, by, x, strategies, pos, scale, rate, colour, marker, numeric)
            ax.set_xticks(sorted(set(pos.values())), [t for _, t in sorted(zip(pos.values(), ticks, strict=True))])
            if slant:
                ax.tick_params(axis="x", labelrotation=30)
                for label in ax.get_xticklabels():
                    label.set_horizontalalignment("right")
                    label.set_rotation_mode("anchor")
            ax.set_xlabel(ps.factor_label(x))
            if facet is not None:
                ax.set_title(f"{facet} = {ps.level_text(facet, fl)}")
            if not numeric:
                ax.set_xlim(-0.4, len(pos) - 0.6)
        for ax in axes if not share else axes[:1]:
            ax.set_ylabel(ylabel)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, title=by, loc="outside right upper", frameon=False)
        title = f"{m.label[0].upper() + m.label[1:]} against {x}"
        # The legend sits at the right: centre the title over the panels and wrap it to their width.
        legend_w = max(len(by), *(len(lab) for lab in labels)) * 0.075 + 0.6
        full = title + (f" ({m.better} is better)" if m.better else "")
        fig.suptitle(
            ps.wrap(full, max(20, int((width - legend_w) * 8.5))),
            fontweight="bold",
            x=max(0.3, (width - legend_w) / 2 / width),
        )
        stem = f"metric_{ps.safe_stem(metric)}_vs_{ps.safe_stem(x)}"
        png = ps.save(fig, outdir, stem)
    pooled = results.other_factors(by, x, facet)
    band = "Wilson interval" if rate else "t-interval"
    caption = f"Mean per {by} with a 95% confidence band ({band}), {len(runs)} runs"
    caption += f"; pooled over {', '.join(pooled)}." if pooled else "."
    return png, title, caption


def _draw_lines(ax, part, metric, by, x, strategies, pos, scale, rate, colour, marker, numeric=True) -> None:
    """A numeric factor gets lines with CI bands; a categorical one gets points with CI whiskers, side by side
    per strategy, since a line between unordered levels would suggest a trend that is not there."""
    n = len(strategies)
    for i, strategy in enumerate(strategies):
        rows = part[_eq(part[by], strategy)]
        if rows.empty:
            continue
        xs, means, lows, highs = [], [], [], []
        for level, group in rows.groupby(x, sort=False, dropna=False):
            values = group[metric].to_numpy(dtype=float)
            values = values[~np.isnan(values)]
            if len(values) == 0 or level not in pos:
                continue
            lo, hi = interval(values, rate)
            if values.min() >= 0:  # a band below zero for a count or a size would be nonsense
                lo = max(lo, 0.0)
            xs.append(pos[level])
            means.append(values.mean() / scale)
            lows.append((lo if not np.isnan(lo) else values.mean()) / scale)
            highs.append((hi if not np.isnan(hi) else values.mean()) / scale)
        order = np.argsort(xs)
        xs, means = np.asarray(xs)[order], np.asarray(means)[order]
        lows, highs = np.asarray(lows)[order], np.asarray(highs)[order]
        c = colour[str(strategy)]
        if not numeric:
            dodge = (i - (n - 1) / 2) * min(0.6 / max(n, 1), 0.15)
            yerr = [np.maximum(means - lows, 0), np.maximum(highs - means, 0)]
            ax.errorbar(
                xs + dodge,
                means,
                yerr=yerr,
                fmt=marker[str(strategy)],
                color=c,
                markersize=6,
                capsize=3,
                linewidth=1.4,
                label=ps.level_text(by, strategy),
            )
            continue
        # Later strategies are drawn thinner on top, so identical lines stay visible underneath.
        width = 1.5 + 1.6 * (n - 1 - i) / max(n - 1, 1)
        ax.fill_between(xs, lows, highs, color=c, alpha=0.15, linewidth=0)
        ax.plot(
            xs,
            means,
            color=c,
            marker=marker[str(strategy)],
            linewidth=width,
            markersize=4 + 2.5 * (n - 1 - i) / max(n - 1, 1),
            label=ps.level_text(by, strategy),
        )


def _share_y(runs: pd.DataFrame, metric: str, facet: str | None, levels: list) -> bool:
    """One y scale for all panels, unless one panel's values dwarf another's (then each gets its own)."""
    if facet is None or len(levels) < 2:
        return True
    peaks = [
        float(np.nanmax(np.abs(runs.loc[_eq(runs[facet], lv), metric].to_numpy(dtype=float)), initial=0))
        for lv in levels
    ]
    nonzero = [p for p in peaks if p > 0]  # an all-zero panel reads fine on any scale
    return not nonzero or max(nonzero) / min(nonzero) <= 4


def _eq(col: pd.Series, value) -> pd.Series:
    if value is None:
        return pd.Series(True, index=col.index)
    if isinstance(value, float) and np.isnan(value):
        return col.isna()
    return col == value

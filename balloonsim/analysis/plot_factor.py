"""A metric against one factor, per strategy with its 95% interval, faceted by a small factor.

This is the "how does the answer change with the regime" view: e.g. OOM kills against the onlining delay,
one panel per driver. Factors neither on the x axis nor faceted are pooled (and the caption says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from balloonsim.analysis import plotstyle as ps
from balloonsim.analysis.labels import labels_of
from balloonsim.analysis.metrics import axis_label, info, is_rate, value_range
from balloonsim.analysis.stats import interval

MAX_FACETS = 4
MAX_WIDTH = 11.0  # inches of panels before categorical tick labels are slanted rather than wrapped


LARGE_EFFECT = 0.5  # levels whose mean metric spans half its typical size: pooling over them hides a finding


def choose_facet(results, by: str | None, x: str | None, metrics: list[str] | tuple[str, ...] = ()) -> str | None:
    """The varying factor (at most MAX_FACETS levels) that moves the figure's metrics most; fewest levels, non-numeric
    first, when none moves them (or no metric is given). The factor a finding lives in gets panels of its own
    instead of being averaged away (numa's memmap placement depends on driver.node, not on movable_node)."""
    options = results.other_factors(by, x)
    options = [f for f in options if len(results.levels(f)) <= MAX_FACETS]
    if not options:
        return None
    options.sort(key=lambda f: (len(results.levels(f)), pd.api.types.is_numeric_dtype(results.runs[f])))
    return max(options, key=lambda f: round(effect(results, f, metrics), 9))  # the first of equals


def effect(results, factor: str, metrics: list[str] | tuple[str, ...]) -> float:
    """How far the factor's levels move the metrics: the spread of the per-level means over the metric's mean
    magnitude, summed over the metrics (0 for a metric that is all zero or absent)."""
    runs = results.runs
    total = 0.0
    for metric in metrics:
        if metric not in runs:
            continue
        values = runs[metric].astype(float)
        size = float(values.abs().mean()) if values.notna().any() else 0.0
        if not size > 0:
            continue
        means = values.groupby(runs[factor], dropna=False).mean().dropna()
        if len(means) > 1:
            total += float(means.max() - means.min()) / size
    return total


def hidden_by_pooling(results, metrics: list[str] | tuple[str, ...], *shown: str | None) -> list[str]:
    """Pooled factors whose levels differ a lot in the metrics: the figure's title must say it averages them."""
    return [f for f in results.other_factors(*shown) if effect(results, f, metrics) > LARGE_EFFECT]


ID_WORDS = ("node", "nid", "_id", "index")  # numeric factors that name things: categories, never a line


def is_identifier(factor: str) -> bool:
    last = factor.rsplit(".", 1)[-1]
    return any(last == w or last.endswith(w) for w in ID_WORDS)


MAX_CATEGORICAL = 6  # this few levels are categories, evenly spaced: a line between two would invent a continuum
MAX_GAP_RATIO = 3.0  # a linear axis only for levels about evenly spread (128M/256M/2G crowd at the left)


def x_positions(results, x: str) -> tuple[dict, list[str], bool]:
    """Level -> x position, tick labels, and whether the axis is numeric (linear in the level's value).

    Linear only for many (more than MAX_CATEGORICAL), about evenly spread numeric levels: only then do the lines
    and bands drawn between them read as a trend. Everything else is evenly spaced and labelled.
    """
    levels = results.levels(x)
    numeric = pd.api.types.is_numeric_dtype(results.runs[x]) and not pd.api.types.is_bool_dtype(results.runs[x])
    numeric = numeric and not any(pd.isna(v) for v in levels) and not is_identifier(x)
    if numeric and len(levels) > MAX_CATEGORICAL:
        gaps = np.diff(np.asarray(levels, dtype=float))
        if gaps.min() > 0 and gaps.max() / gaps.min() <= MAX_GAP_RATIO:
            return {lv: float(lv) for lv in levels}, [ps.level_text(x, lv) for lv in levels], True
    return {lv: float(i) for i, lv in enumerate(levels)}, [ps.wrap(ps.level_text(x, lv), 12) for lv in levels], False


@dataclass
class Cell:
    """One point of the figure: the values used (survivors), and how many runs there were."""

    values: np.ndarray
    runs: int
    alive: int


def factor_figure(
    results, by: str, metric: str, x: str, outdir: Path, svg: bool = False
) -> tuple[Path, str, str] | None:
    """Draw and save one figure; returns (png, title, caption) or None when there is nothing to draw.

    Lines with a shaded confidence band only for a noisy metric against a numeric factor; a 0/1 outcome (Wilson
    interval) or a deterministic metric (every run of a point identical) is drawn as points, dodged per level,
    so a 0 %/100 % result never becomes a blended band. A point whose guests all died is marked, not drawn.
    """
    runs = results.runs
    if metric not in runs or runs[metric].dropna().empty:
        return None
    facet = choose_facet(results, by, x, [metric])
    facet_levels = results.levels(facet) if facet else [None]
    strategies = results.levels(by)
    names = [ps.level_text(by, s) for s in strategies]
    colour, marker = ps.colours(names, by), ps.markers(names, by)
    pos, ticks, numeric = x_positions(results, x)
    rate = is_rate(metric, runs[metric])
    cells = _cells(results, metric, by, x, facet, strategies, facet_levels)
    filled = [c.values for c in cells.values() if len(c.values)]
    # Every point's runs identical: no interval to draw. A 0/1 outcome keeps its Wilson interval regardless (0 of
    # 10 crashed is not 0 of 1000).
    deterministic = (
        not rate and bool(filled) and all(np.all(v == v[0]) for v in filled) and any(len(v) > 1 for v in filled)
    )
    lines = numeric and not rate and not deterministic
    ylabel, scale = axis_label(metric, float(np.nanmax(np.abs(runs[metric].to_numpy(dtype=float)))))
    if rate:
        scale = 0.01
    m = info(metric)
    per_tick = max(0.55, 0.07 * max(len(line) for t in ticks for line in t.split("\n")) + 0.15)
    panel = max(3.9, per_tick * len(ticks) + 0.8) if not numeric else 3.9
    slant = not numeric and panel * len(facet_levels) > MAX_WIDTH
    height = 3.9 + 0.16 * max(t.count("\n") for t in ticks)
    if slant:
        ticks = [t.replace("\n", " ") for t in ticks]
        panel = max(3.9, 0.75 * len(ticks) + 0.8)
        height = 3.9 + 0.04 * max(len(t) for t in ticks)
    width = min(ps.MAX_WIDTH_IN, max(7.0, panel * len(facet_levels) + 2.6))  # the legend needs ~2.5 in
    dead_seen = False
    with ps.style():
        fig = ps.figure(width, height)
        share = rate or _share_y(runs, metric, facet, facet_levels)
        axes = fig.subplots(1, len(facet_levels), sharey=share, squeeze=False)[0]
        for ax, fl in zip(axes, facet_levels, strict=True):
            for i, (strategy, name) in enumerate(zip(strategies, names, strict=True)):
                points = [
                    (pos[lv], cells[(fl, strategy, lv)]) for lv in results.levels(x) if (fl, strategy, lv) in cells
                ]
                style = {"colour": colour[name], "marker": marker[name], "label": name, "range": value_range(metric)}
                dead_seen |= _draw_level(ax, points, i, len(strategies), scale, rate, lines, deterministic, style)
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
                ax.set_xlim(-0.5, len(pos) - 0.5)
            if rate:
                ax.set_ylim(-4, 104)
        for ax in axes if not share else axes[:1]:
            ax.set_ylabel(ps.wrap(ylabel, int(height * 9)))  # a long label must not run off the panel
        handles, labels = axes[0].get_legend_handles_labels()
        seen = dict(zip(labels, handles, strict=True))
        handles = [seen[n] for n in names if n in seen]
        labels = [n for n in names if n in seen]
        extra = _legend_notes(rate, lines, deterministic, dead_seen)
        handles += [h for h, _ in extra]
        labels += [t for _, t in extra]
        fig.legend(handles, labels, title=by, loc="outside right upper", frameon=False)
        title = f"{m.label[0].upper() + m.label[1:]} against {x}"
        hidden = hidden_by_pooling(results, [metric], by, x, facet)
        if hidden:
            title += f", averaged over {', '.join(hidden)} (whose levels differ)"
        legend_w = max(len(by), *(len(lab) for lab in labels)) * 0.075 + 0.6
        full = title + (f" ({m.better} is better)" if m.better else "")
        fig.suptitle(
            ps.wrap(full, max(20, int((width - legend_w) * 8.5))),
            fontweight="bold",
            x=max(0.3, (width - legend_w) / 2 / width),
        )
        stem = f"metric_{ps.safe_stem(metric)}_vs_{ps.safe_stem(x)}"
        png = ps.save(fig, outdir, stem, svg)
    pooled = results.other_factors(by, x, facet)
    interval_name = "Wilson interval" if rate else "t-interval of the mean"
    shape = "lines with a shaded 95% band" if lines else "points with 95% bars"
    if deterministic:
        shape = "points (every run of a point identical: no interval)"
    caption = f"Mean per {by}: {shape}" + ("" if deterministic else f" ({interval_name})") + ". "
    caption += _runs_used(results, metric, by, names) + ("" if not pooled else f" Pooled over {', '.join(pooled)}.")
    return png, title, caption


def _cells(results, metric, by, x, facet, strategies, facet_levels) -> dict:
    """(facet level, strategy, x level) -> Cell, from one groupby."""
    runs = results.runs
    keys = [k for k in (facet, by, x) if k is not None]
    frame = runs[keys + [metric]].assign(_alive=results.alive.to_numpy())
    out = {}
    for key, group in frame.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        fl = key[0] if facet is not None else None
        strategy, level = key[-2], key[-1]
        values = group[metric].to_numpy(dtype=float)
        out[(fl, strategy, level)] = Cell(values[~np.isnan(values)], len(group), int(group["_alive"].sum()))
    return out


def _draw_level(ax, points, i: int, n: int, scale, rate, lines, deterministic, style) -> bool:
    """One level's points (or line); returns whether it marked a point without survivors."""
    xs, means, lows, highs, dead = [], [], [], [], []
    for xpos, cell in sorted(points, key=lambda p: p[0]):
        if cell.alive == 0 and not rate:
            dead.append(xpos)
            continue
        if len(cell.values) == 0:
            continue
        mean = float(cell.values.mean())
        lo, hi = (mean, mean) if deterministic else interval(cell.values, rate)
        if cell.values.min() >= 0 and not np.isnan(lo):
            lo = max(lo, 0.0)  # an interval below zero for a count or a size would be nonsense
        floor, ceiling = style["range"]  # nor one beyond what the metric can be (a share above 1)
        lo, hi = (v if np.isnan(v) else min(max(v, floor), ceiling) for v in (lo, hi))
        xs.append(xpos)
        means.append(mean / scale)
        lows.append((mean if np.isnan(lo) else lo) / scale)
        highs.append((mean if np.isnan(hi) else hi) / scale)
    xs_a, means_a = np.asarray(xs, dtype=float), np.asarray(means, dtype=float)
    lows_a, highs_a = np.asarray(lows, dtype=float), np.asarray(highs, dtype=float)
    c = style["colour"]
    positions = sorted({p for p, _ in points})
    span = float(np.diff(positions).min()) if len(positions) > 1 else 1.0
    dodge = (i - (n - 1) / 2) * min(0.6 / max(n, 1), 0.15) * span
    if lines:
        width = 1.5 + 1.6 * (n - 1 - i) / max(n - 1, 1)  # later levels thinner on top: identical lines stay visible
        ax.fill_between(xs_a, lows_a, highs_a, color=c, alpha=0.15, linewidth=0)
        ax.plot(xs_a, means_a, color=c, marker=style["marker"], linewidth=width, markersize=5, label=style["label"])
    else:
        ax.errorbar(
            xs_a + dodge,
            means_a,
            yerr=[np.maximum(means_a - lows_a, 0), np.maximum(highs_a - means_a, 0)],
            fmt=style["marker"],
            linestyle="none",
            color=c,
            markersize=6,
            capsize=0 if deterministic else 3,
            linewidth=1.4,
            label=style["label"],
        )
    # On the x axis line itself, in the level's colour and place, drawn across the frame: anywhere inside the
    # plotting area it would read as a value whenever the y axis does not start at 0.
    for xpos in dead:
        ax.plot(
            [xpos + dodge],
            [0.0],
            marker="x",
            color=c,
            markersize=8,
            markeredgewidth=2,
            linestyle="none",
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            zorder=5,
        )
    return bool(dead)


def _legend_notes(rate: bool, lines: bool, deterministic: bool, dead: bool) -> list:
    notes = []
    if lines:
        notes.append((Patch(color="#888888", alpha=0.3), "shaded: 95% CI of the mean"))
    elif not deterministic:
        notes.append(
            (
                Line2D([], [], color="#444444", marker="|", linestyle="none", markersize=10),
                "bar: 95% " + ("Wilson interval" if rate else "CI of the mean"),
            )
        )
    if dead:
        notes.append((Line2D([], [], color="#444444", marker="x", linestyle="none"), "on the x axis: no surviving run"))
    return notes


def _runs_used(results, metric: str, by: str, names: list[str]) -> str:
    """'n = 180 runs' or, with deaths, 'n = 150 surviving of 180 runs (altmap: 30 of 60)'."""
    if info(metric).survival or results.alive.all():
        return f"n = {len(results.runs)} runs."
    shown = labels_of(results.runs[by], by)
    parts = []
    for name in names:
        mask = (shown == name).to_numpy()
        alive = int(results.alive[mask].sum())
        if alive < mask.sum():
            parts.append(f"{name}: {alive} of {int(mask.sum())}")
    return f"n = {int(results.alive.sum())} surviving of {len(results.runs)} runs ({'; '.join(parts)})."


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

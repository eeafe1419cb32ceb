"""Timelines of one representative run per strategy in one regime: memory over time with the events.

Which runs, samples and events are shown is decided in `timeline`; this module draws them. Every series is a
sample of a value at an instant, so all are drawn the same way, as steps held until the next sample: MemFree can
never show above MemTotal. A long run (hours of bursts) is shown where its hot-plug happens, with the whole run
beside it as a band of each window's lowest and highest MemFree, so it stays readable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from balloonsim.analysis import plotstyle as ps
from balloonsim.analysis.metrics import fmt, info
from balloonsim.analysis.timeline import Timeline, timeline, zoom_window
from balloonsim.units import GiB

# column, legend label, colour, line style, width. Neutral colours: strategies own the palette, red the crash.
SERIES = (
    ("memtotal_bytes", "MemTotal", "#000000", "-", 2.0),
    ("memfree_bytes", "MemFree", "#00796b", "-", 1.3),
    ("demand_bytes", "demand", "#7a5195", "--", 1.3),
    ("target_bytes", "host target", "#999999", ":", 1.8),
    ("pagecache_bytes", "page cache", "#b3b3b3", "-.", 1.0),
)
# strip row label, colour, marker
EVENT_ROWS = (
    ("hot-add request", "#7f7f7f", "|"),
    ("add_memory ok", "#333333", "v"),
    ("add_memory failed", "#d62728", "x"),
    ("populate", "#7f7f7f", "."),
    ("online", "#333333", "^"),
    ("offline/remove", "#333333", "d"),
    ("fake-offline", "#7f7f7f", "s"),
    ("OOM kill", "#d62728", "X"),
    ("onlining agent killed", "#d62728", "P"),
)
OVERVIEW_BINS = 240
# Without an events file the strip is derived from counters (timeline.event_times), which cannot show failures.
NO_EVENTS_NOTE = "no events file: failed hot-adds and requests not recorded (marks from block and OOM counters)"


def timeline_figure(
    analysis, metric: str, regime: str, outdir: Path, svg: bool = False
) -> tuple[Path, str, str] | None:
    """The time line of `regime` on `metric`; None when there is no time series."""
    shown = timeline(analysis, metric, regime)
    return draw_timeline(shown, outdir, svg) if shown is not None else None


def draw_timeline(shown: Timeline, outdir: Path, svg: bool = False) -> tuple[Path, str, str]:
    """One panel (memory steps) and one event strip per strategy.

    When the hot-plug activity (requests, add_memory, online, crash) fits in a short window of a long run, the
    panels show that window, and a narrower column beside them the whole run (MemTotal, and MemFree as the band
    between its lowest and highest value in each of OVERVIEW_BINS windows).
    """
    ts, metric, regime = shown.samples, shown.metric, shown.regime
    series = [s for s in SERIES if s[0] in ts.columns and ts[s[0]].notna().any()]
    rows_used = [r for r in EVENT_ROWS if any(len(run.times.get(r[0], ())) for run in shown.runs)]
    zoom = zoom_window(shown.runs, float(ts["t"].min()), float(ts["t"].max()))
    with ps.style():
        fig, title = _figure(shown, series, rows_used, zoom)
        png = ps.save(fig, outdir, "timeline", svg)
    source = (
        "events file"
        if shown.from_events
        else "blocks_added/blocks_online/oom_kills counters (no events file: failed hot-adds are not marked)"
    )
    caption = (
        f"One run per {shown.by or 'experiment'} in the regime {regime}: the run whose "
        f"{info(metric).label} is closest to the median of its runs. Values in GiB, each held until the next "
        f"sample; the strip under a panel marks events from the {source}"
        + ("; shading marks time spent stalled" if any_stalled(ts) else "")
        + (
            f". The left column shows {zoom[0]:.0f}–{zoom[1]:.0f} s, where the hot-plug events are; the right "
            "column the whole run."
            if zoom
            else "."
        )
    )
    return png, title, caption


def _figure(shown: Timeline, series, rows_used, zoom: tuple[float, float] | None) -> tuple[Figure, str]:
    """The figure of draw_timeline, drawn in the caller's style, and its title."""
    ts, runs, metric, regime = shown.samples, shown.runs, shown.metric, shown.regime
    t_max = float(ts["t"].max())
    rate = info(metric).unit == "rate"
    fig = ps.figure(13.0 if zoom else 11.0, 0.9 + len(runs) * (2.6 + 0.22 * len(rows_used)))
    ratios = [v for _ in runs for v in (3.0, 0.35 + 0.22 * len(rows_used))]
    grid = fig.subplots(
        2 * len(runs),
        2 if zoom else 1,
        squeeze=False,
        gridspec_kw={"height_ratios": ratios, **({"width_ratios": [5, 2]} if zoom else {})},
    )
    for col in range(grid.shape[1]):
        for ax in grid[1:, col]:
            ax.sharex(grid[0, col])
    mains = grid[0::2, :].ravel()
    for ax in mains[1:]:
        ax.sharey(mains[0])
    for k, run in enumerate(runs):
        run_ts, times, crash = run.samples, run.times, run.crash
        for col in range(grid.shape[1]):
            main, strip = grid[2 * k, col], grid[2 * k + 1, col]
            if col == 0:
                _memory_panel(main, run_ts, series)
                _event_strip(strip, times, rows_used, labels=True)
            else:
                _overview_panel(main, run_ts, series, zoom)
                _event_strip(strip, times, rows_used, labels=False)
            if crash is not None:
                _crash_marker(main, strip, crash)
            main.tick_params(labelbottom=False)
        if zoom:
            grid[2 * k, 0].set_xlim(*zoom)
            grid[2 * k, 1].set_title(f"whole run: 0–{t_max:.0f} s", loc="left")
        grid[2 * k, 0].set_title(_run_title(run, metric, rate), loc="left")
        grid[2 * k, 0].set_ylabel("GiB")
    # The main panels share y: its range is set once every panel is drawn, from all of them (a limit set while
    # drawing the first would freeze the range at that panel's data and cut the others off).
    mains[0].set_ylim(0, _top_gib(runs, series) * 1.05)
    for ax in grid[-1, :]:
        ax.set_xlabel("simulated time (s)")
    handles = [Line2D([], [], color=c, linestyle=ls, linewidth=w, label=lab) for _, lab, c, ls, w in series]
    if zoom and any(c == "memfree_bytes" for c, *_ in series):
        handles.append(Patch(color="#00796b", alpha=0.3, label="whole run: MemFree lowest (line) to highest"))
    if any_stalled(ts):
        handles.append(Patch(color=ps.CRASH, alpha=0.15, label="stalled"))
    if any(run.crash is not None for run in runs):
        handles.append(Line2D([], [], color=ps.CRASH, linewidth=2, label="crash"))
    # the run titles may count failures the strips cannot mark: said once, with the legend, off the data
    note = None if shown.from_events else NO_EVENTS_NOTE
    fig.legend(
        handles=handles, loc="outside lower center", ncols=min(len(handles), 8), frameon=False, title=note,
        title_fontsize=8,
    )  # fmt: skip
    title = f"Representative runs: {regime}"
    fig.suptitle(title, fontweight="bold")
    return fig, title


def _top_gib(runs, series) -> float:
    """The highest value any run's panel draws, in GiB (1 when there is none)."""
    tops = [
        float(np.nanmax(run.samples[col].to_numpy(dtype=float)))
        for run in runs
        for col, *_ in series
        if col in run.samples and run.samples[col].notna().any()
    ]
    return max(tops) / GiB if tops and max(tops) > 0 else 1.0


def _run_title(run, metric: str, rate: bool) -> str:
    strategy, row, n, median, crash = run.strategy, run.row, run.n, run.median, run.crash
    if rate:
        share = f"{median * 100:.0f}% of {n} runs" if np.isfinite(median) else f"{n} runs"
        fate = f"crashed at {crash:.0f} s" if crash is not None else "survived"
        return f"{strategy}: run {row['run_id']} {fate} ({info(metric).label}: {share})"
    value = fmt(metric, float(row[metric])) if metric in row and pd.notna(row[metric]) else "–"
    return (
        f"{strategy}: run {row['run_id']}, {info(metric).label} = {value} "
        f"(median of {n} run{'s' if n != 1 else ''}: {fmt(metric, median)})"
    )


def _overview_panel(ax, run_ts: pd.DataFrame, series, zoom: tuple[float, float]) -> None:
    """The whole run at a glance: MemTotal as steps, MemFree as its range per window, the zoomed span shaded."""
    t = run_ts["t"].to_numpy(dtype=float)
    if len(t) == 0:
        return
    edges = np.linspace(t.min(), t.max(), OVERVIEW_BINS + 1)
    which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, OVERVIEW_BINS - 1)
    for col, _label, colour, style, width in series:
        values = run_ts[col].to_numpy(dtype=float) / GiB
        if col == "memfree_bytes":
            frame = pd.DataFrame({"bin": which, "v": values}).groupby("bin")["v"].agg(["min", "max"])
            x = edges[frame.index.to_numpy()]
            ax.fill_between(x, frame["min"], frame["max"], step="post", color=colour, alpha=0.3, linewidth=0)
            ax.plot(x, frame["min"], color=colour, linewidth=0.8, drawstyle="steps-post")
        elif col == "memtotal_bytes":
            ax.plot(t, values, color=colour, linestyle=style, linewidth=width, drawstyle="steps-post")
    ax.axvspan(*zoom, color="#ffd54f", alpha=0.25, linewidth=0)


def _crash_marker(main, strip, crash: float) -> None:
    for ax in (main, strip):
        ax.axvline(crash, color=ps.CRASH, linewidth=2)
    main.annotate(
        "crash",
        xy=(crash, 1.0),
        xycoords=("data", "axes fraction"),
        xytext=(3, -12),
        textcoords="offset points",
        color=ps.CRASH,
        fontweight="bold",
    )


def any_stalled(samples: pd.DataFrame) -> bool:
    """Whether any sample shown was stalled: the legend and the caption speak of stall shading only then."""
    return "stalled" in samples.columns and bool((samples["stalled"].fillna(0) > 0).any())


def _memory_panel(ax, run_ts: pd.DataFrame, series) -> None:
    t = run_ts["t"].to_numpy(dtype=float)
    for col, label, colour, style, width in series:
        ax.plot(
            t,
            run_ts[col].to_numpy(dtype=float) / GiB,
            color=colour,
            linestyle=style,
            linewidth=width,
            label=label,
            drawstyle="steps-post",
        )
    if "stalled" in run_ts.columns:
        stalled = run_ts["stalled"].fillna(0).to_numpy(dtype=float) > 0
        ax.fill_between(
            t,
            0,
            1,
            where=stalled,
            transform=ax.get_xaxis_transform(),
            color=ps.CRASH,
            alpha=0.12,
            step="post",
            linewidth=0,
        )


def _event_strip(ax, times: dict[str, np.ndarray], rows, labels: bool = True) -> None:
    ax.grid(False)
    for i, (label, colour, marker) in enumerate(rows):
        xs = times.get(label, np.array([]))
        ax.scatter(xs, np.full(len(xs), i), marker=marker, color=colour, s=28, linewidths=1.2)
    # without labels the rows' ticks would draw nothing (no length, no grid): none are made
    ax.set_yticks(range(len(rows)) if labels else [], [r[0] for r in rows] if labels else [], fontsize=7.5)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.invert_yaxis()
    ax.spines["left"].set_visible(False)
    ax.tick_params(axis="y", length=0)

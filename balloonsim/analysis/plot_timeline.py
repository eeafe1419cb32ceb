"""Timelines of one representative run per strategy in one regime: memory over time with the events.

The representative run is the one whose primary metric is closest to its strategy's median in that regime, so
the picture is typical rather than the luckiest or unluckiest seed. Without an events file, hot-add and online
markers are derived from the blocks_added/blocks_online counters and the crash from crash_time_s.
Every series is a sample of a value at an instant, so all are drawn the same way, as steps held until the next
sample: MemFree can never show above MemTotal. A long run (hours of bursts) is shown where its hot-plug happens,
with the whole run beside it as a band of each window's lowest and highest MemFree, so it stays readable.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from balloonsim.analysis import plotstyle as ps
from balloonsim.analysis.compare import differs, regime_labels
from balloonsim.analysis.labels import level_text
from balloonsim.analysis.metrics import fmt, info
from balloonsim.errors import UserError
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
LONG_RUN_S = 3600.0  # runs longer than this are shown through a window
WINDOW_S = 1800.0
# add_memory/online details end in the errno name ("0" or "-ENOMEM"); some failures are worded instead.
FAILED = re.compile(r"-E[A-Z0-9]+\b|no free|fail|error|refused|out of memory", re.IGNORECASE)


def parse_regime(results, by: str | None, text: str) -> str:
    """'driver.name=xen,onlining.delay_s=5' -> the regime label of the runs it selects (exactly one)."""
    runs = results.runs
    mask = pd.Series(True, index=runs.index)
    for part in [p for p in text.split(",") if p.strip()]:
        if "=" not in part:
            raise UserError(f"--regime: {part.strip()!r} is not FACTOR=VALUE")
        factor, value = (s.strip() for s in part.split("=", 1))
        if factor not in results.factors:
            raise UserError(f"--regime: {factor!r} is not a factor; factors are {', '.join(results.factors)}")
        mask &= runs[factor].map(lambda v, want=value: _same(v, want))
    labels = regime_labels(results, by)[mask]
    found = list(pd.unique(labels))
    if not found:
        raise UserError(f"--regime {text!r}: no successful run matches")
    if len(found) > 1:
        raise UserError(
            f"--regime {text!r} matches {len(found)} regimes; also give a value for: " + _missing(results, by, text)
        )
    return found[0]


def choose_regime(analysis, metric: str) -> str:
    """The regime where strategies differ most on `metric` (largest significant effect), else the first."""
    labels = regime_labels(analysis.results, analysis.by)
    comp = analysis.comparisons
    if not comp.empty:
        rows = comp[(comp["metric"] == metric) & differs(comp)]
        if rows.empty:
            rows = comp[(comp["metric"] == metric) & comp["p"].notna()]
        if not rows.empty:
            rows = rows.assign(abs_delta=rows["cliffs_delta"].abs(), abs_diff=rows["diff"].abs())
            return str(rows.sort_values(["abs_delta", "abs_diff"], ascending=False, kind="stable")["regime"].iloc[0])
    return str(labels.iloc[0])


def representatives(analysis, regime: str, metric: str) -> list[tuple[str, pd.Series, int, float]]:
    """(strategy, run row, runs in the cell, median) with the run closest to the median of `metric`."""
    results, by = analysis.results, analysis.by
    runs = results.runs[regime_labels(results, by) == regime]
    out = []
    levels = results.levels(by) if by else [None]
    for level in levels:
        part = runs if level is None else runs[runs[by] == level]
        if part.empty:
            continue
        values = part[metric].to_numpy(dtype=float) if metric in part else np.full(len(part), np.nan)
        median = float(np.nanmedian(values)) if not np.all(np.isnan(values)) else float("nan")
        distance = np.abs(values - median) if not np.isnan(median) else np.zeros(len(part))
        distance = np.where(np.isnan(distance), np.inf, distance)
        row = part.iloc[int(np.argmin(distance))]
        out.append(("all runs" if level is None else level_text(by, level), row, len(part), median))
    return out


def timeline_figure(
    analysis, metric: str, regime: str, outdir: Path, svg: bool = False
) -> tuple[Path, str, str] | None:
    """One panel (memory steps) and one event strip per strategy; None when there is no time series.

    When the hot-plug activity (requests, add_memory, online, crash) fits in a short window of a long run, the
    panels show that window, and a narrower column beside them the whole run (MemTotal, and MemFree as the band
    between its lowest and highest value in each of OVERVIEW_BINS windows).
    """
    if not analysis.results.has_timeseries():
        return None
    chosen = representatives(analysis, regime, metric)
    ids = [str(row["run_id"]) for _, row, _, _ in chosen]
    ts = analysis.results.timeseries(ids)
    if ts is None or ts.empty:
        return None
    events = analysis.results.events(ids)
    runs = []
    for strategy, row, n, median in chosen:
        rid = str(row["run_id"])
        run_events = None if events is None else events[events["run_id"] == rid]
        run_ts = ts[ts["run_id"] == rid]
        runs.append((strategy, row, n, median, run_ts, _event_times(run_ts, run_events), _crash_time(row, run_events)))
    series = [s for s in SERIES if s[0] in ts.columns and ts[s[0]].notna().any()]
    rows_used = [r for r in EVENT_ROWS if any(len(r_[5].get(r[0], ())) for r_ in runs)]
    t_min, t_max = float(ts["t"].min()), float(ts["t"].max())
    zoom = _zoom_window(runs, t_min, t_max)
    rate = info(metric).unit == "rate"
    with ps.style():
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
        for k, (strategy, row, n, median, run_ts, times, crash) in enumerate(runs):
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
            grid[2 * k, 0].set_title(_run_title(strategy, row, n, median, metric, rate, crash), loc="left")
            grid[2 * k, 0].set_ylabel("GiB")
        for ax in grid[-1, :]:
            ax.set_xlabel("simulated time (s)")
        handles = [Line2D([], [], color=c, linestyle=ls, linewidth=w, label=lab) for _, lab, c, ls, w in series]
        if zoom and any(c == "memfree_bytes" for c, *_ in series):
            handles.append(Patch(color="#00796b", alpha=0.3, label="whole run: MemFree lowest (line) to highest"))
        if "stalled" in ts.columns:
            handles.append(Patch(color=ps.CRASH, alpha=0.15, label="stalled"))
        if any(r[6] is not None for r in runs):
            handles.append(Line2D([], [], color=ps.CRASH, linewidth=2, label="crash"))
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 8), frameon=False)
        title = f"Representative runs: {regime}"
        fig.suptitle(title, fontweight="bold")
        png = ps.save(fig, outdir, "timeline", svg)
    source = "events file" if events is not None else "blocks_added/blocks_online/oom_kills counters (no events file)"
    caption = (
        f"One run per {analysis.by or 'experiment'} in the regime {regime}: the run whose "
        f"{info(metric).label} is closest to the median of its runs. Values in GiB, each held until the next "
        f"sample; the strip under a panel marks events from the {source}; shading marks time spent stalled"
        + (
            f". The left column shows {zoom[0]:.0f}–{zoom[1]:.0f} s, where the hot-plug events are; the right "
            "column the whole run."
            if zoom
            else "."
        )
    )
    return png, title, caption


def _run_title(strategy: str, row, n: int, median: float, metric: str, rate: bool, crash: float | None) -> str:
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
    ax.set_ylim(bottom=0)


ZOOM_KINDS = ("hot-add request", "add_memory ok", "add_memory failed", "populate", "online", "offline/remove")


def _zoom_window(runs, t_min: float, t_max: float) -> tuple[float, float] | None:
    """The span of hot-plug events and crashes, padded, when it covers less than a third of the run."""
    times = [t for r in runs for kind in ZOOM_KINDS for t in r[5].get(kind, ())]
    times += [r[6] for r in runs if r[6] is not None]
    duration = t_max - t_min
    if not times or duration <= 0:
        return None
    lo, hi = min(times), max(times)
    pad = max(0.1 * (hi - lo), 0.02 * duration)
    lo, hi = max(t_min, lo - pad), min(t_max, hi + pad)
    if hi - lo < duration / 3:
        return (lo, hi)
    if duration > LONG_RUN_S:  # hot-plug all through a long run: its beginning, readable, beside the whole
        return (lo, min(t_max, lo + max(WINDOW_S, duration / 6)))
    return None


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
    ax.set_ylim(bottom=0)


def _event_strip(ax, times: dict[str, np.ndarray], rows, labels: bool = True) -> None:
    ax.grid(False)
    for i, (label, colour, marker) in enumerate(rows):
        xs = times.get(label, np.array([]))
        ax.scatter(xs, np.full(len(xs), i), marker=marker, color=colour, s=28, linewidths=1.2)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows] if labels else [], fontsize=7.5)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.invert_yaxis()
    ax.spines["left"].set_visible(False)
    ax.tick_params(axis="y", length=0)


def _event_times(run_ts: pd.DataFrame, events: pd.DataFrame | None) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if events is not None and not events.empty and "kind" in events:
        kind = events["kind"].astype(str)
        detail = events["detail"].fillna("").astype(str) if "detail" in events else pd.Series("", index=events.index)
        failed = detail.map(lambda d: bool(FAILED.search(d)))
        t = events["t"].to_numpy(dtype=float)
        out["hot-add request"] = t[(kind == "hotadd_request").to_numpy()]
        out["add_memory ok"] = t[((kind == "add_memory") & ~failed).to_numpy()]
        out["add_memory failed"] = t[((kind == "add_memory") & failed).to_numpy()]
        out["populate"] = t[(kind == "populate").to_numpy()]
        out["online"] = t[((kind == "online") & ~failed).to_numpy()]
        out["offline/remove"] = t[kind.isin(["offline", "remove_memory", "unplug"]).to_numpy()]
        out["fake-offline"] = t[(kind == "fake_offline").to_numpy()]
        out["OOM kill"] = t[(kind == "oom_kill").to_numpy()]
        out["onlining agent killed"] = t[(kind == "agent_killed").to_numpy()]
        return out
    t = run_ts["t"].to_numpy(dtype=float)
    for col, label in (
        ("blocks_added", "add_memory ok"),
        ("blocks_online", "online"),
        ("oom_kills", "OOM kill"),
    ):
        if col in run_ts.columns:
            steps = np.diff(run_ts[col].fillna(0).to_numpy(dtype=float), prepend=0.0)
            out[label] = t[steps > 0]
    if "blocks_added" in run_ts.columns:  # fewer blocks than before: some were offlined and removed
        steps = np.diff(run_ts["blocks_added"].fillna(0).to_numpy(dtype=float), prepend=0.0)
        out["offline/remove"] = t[steps < 0]
    return out


def _crash_time(row: pd.Series, events: pd.DataFrame | None) -> float | None:
    if events is not None and not events.empty and "kind" in events:
        crashes = events.loc[events["kind"].astype(str) == "crash", "t"]
        if len(crashes):
            return float(crashes.iloc[0])
    crashed = row.get("guest_crashed", 0)
    when = row.get("crash_time_s", np.nan)
    if pd.notna(when) and (pd.isna(crashed) or float(crashed) > 0):
        return float(when)
    return None


def _same(value, text: str) -> bool:
    """A level given on the command line: its label (`hyperv request_offset=2M`, `true`), or the raw value."""
    if str(value) == text:
        return True
    factor_free = level_text("", value)
    if factor_free == text or factor_free.lower() == text.lower():
        return True
    try:
        return float(value) == float(text)
    except (TypeError, ValueError):
        return False


def _missing(results, by: str | None, text: str) -> str:
    given = {p.split("=", 1)[0].strip() for p in text.split(",") if "=" in p}
    others = [f for f in results.other_factors(by) if f not in given]
    return ", ".join(others) or "(nothing: the factors given are ambiguous)"

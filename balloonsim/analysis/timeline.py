"""What a time line shows: the regime, one representative run per strategy in it, its samples and its events.

The representative run is the one whose primary metric is closest to its strategy's median in that regime, so
the picture is typical rather than the luckiest or unluckiest seed. Without an events file, hot-add and online
markers are derived from the blocks_added/blocks_online counters and the crash from crash_time_s. A long run
(hours of bursts) is shown through a window where its hot-plug happens. Choosing and reading are apart from the
drawing (plot_timeline) so that the process that reads the files never needs matplotlib.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from balloonsim.analysis.compare import differs, regime_labels
from balloonsim.analysis.labels import level_text
from balloonsim.errors import UserError

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
    return regime_for(analysis.results, analysis.by, analysis.comparisons, metric)


def regime_for(results, by: str | None, comp: pd.DataFrame, metric: str) -> str:
    """choose_regime from the comparisons of `metric` (at least; other rows are ignored)."""
    labels = regime_labels(results, by)
    if not comp.empty:
        rows = comp[(comp["metric"] == metric) & differs(comp)]
        if rows.empty:
            rows = comp[(comp["metric"] == metric) & comp["p"].notna()]
        if not rows.empty:
            rows = rows.assign(abs_delta=rows["cliffs_delta"].abs(), abs_diff=rows["diff"].abs())
            return str(rows.sort_values(["abs_delta", "abs_diff"], ascending=False, kind="stable")["regime"].iloc[0])
    return str(labels.iloc[0])


def representatives(results, by: str | None, regime: str, metric: str) -> list[tuple[str, pd.Series, int, float]]:
    """(strategy, run row, runs in the cell, median) with the run closest to the median of `metric`."""
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


ZOOM_KINDS = ("hot-add request", "add_memory ok", "add_memory failed", "populate", "online", "offline/remove")


def zoom_window(runs: list[Run], t_min: float, t_max: float) -> tuple[float, float] | None:
    """The span of hot-plug events and crashes, padded, when it covers less than a third of the run."""
    times = [t for r in runs for kind in ZOOM_KINDS for t in r.times.get(kind, ())]
    times += [r.crash for r in runs if r.crash is not None]
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


def event_times(run_ts: pd.DataFrame, events: pd.DataFrame | None) -> dict[str, np.ndarray]:
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


def crash_time(row: pd.Series, events: pd.DataFrame | None) -> float | None:
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


@dataclass
class Run:
    """One representative run: its strategy's label, its row of runs.csv, the runs in its cell and their median,
    its samples, its event times by strip row, and when it crashed."""

    strategy: str
    row: pd.Series
    n: int
    median: float
    samples: pd.DataFrame
    times: dict[str, np.ndarray]
    crash: float | None


@dataclass
class Timeline:
    """Everything a time line figure draws, read from the results directory."""

    by: str | None
    metric: str
    regime: str
    runs: list[Run]
    samples: pd.DataFrame  # every representative's time series rows
    from_events: bool  # markers from the events file, else from the counters


def timeline(analysis, metric: str, regime: str) -> Timeline | None:
    """The representatives of `regime` on `metric` with their time series and events; None without a series."""
    return read_timeline(analysis.results, analysis.by, metric, regime)


def read_timeline(results, by: str | None, metric: str, regime: str) -> Timeline | None:
    """`timeline` from the results alone (the representatives need no comparisons)."""
    if not results.has_timeseries():
        return None
    chosen = representatives(results, by, regime, metric)
    ids = [str(row["run_id"]) for _, row, _, _ in chosen]
    ts = results.timeseries(ids)
    if ts is None or ts.empty:
        return None
    events = results.events(ids)
    runs = []
    for strategy, row, n, median in chosen:
        rid = str(row["run_id"])
        run_events = None if events is None else events[events["run_id"] == rid]
        run_ts = ts[ts["run_id"] == rid]
        runs.append(Run(strategy, row, n, median, run_ts, event_times(run_ts, run_events), crash_time(row, run_events)))
    return Timeline(by, metric, regime, runs, ts, events is not None)

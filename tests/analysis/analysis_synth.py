"""Synthetic results directories with known answers, written exactly as the runner's contract says."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd

MiB = 1 << 20
GiB = 1 << 30
BLOCK = 128 * MiB
MEMMAP_PER_BLOCK = 2 * MiB

METRICS = [
    "oom_kills",
    "stall_fraction",
    "hotadd_requests",
    "hotadd_ok",
    "hotadd_enomem",
    "hotadd_einval",
    "guest_crashed",
    "crash_time_s",
    "memmap_bytes_kmalloc",
    "memmap_bytes_in_range",
    "memmap_bytes_remote",
    "memmap_bytes_unbacked",
    "usable_bytes_added",
    "time_to_usable_p50_s",
    "time_to_usable_p95_s",
    "memtotal_start_bytes",
    "memtotal_end_bytes",
    "gigantic_pages_end",
    "blocks_removable_end",
    "base_page_fallbacks",
    "events",
    "sim_time_s",
]


def write_results(
    root: Path,
    runs: pd.DataFrame,
    factors: list[str],
    metrics: list[str],
    *,
    timeseries: pd.DataFrame | None = None,
    events: pd.DataFrame | None = None,
    name: str = "synthetic",
    ts_as_directory: bool = False,
    events_as_parquet: bool = False,
) -> Path:
    """Write runs.csv, metadata.json, experiment.toml and optional time series / events."""
    root.mkdir(parents=True, exist_ok=True)
    runs = runs.copy()
    if "run_id" not in runs:
        runs.insert(0, "run_id", [f"r{i:05d}" for i in range(len(runs))])
    for col, default in (("index", None), ("replicate", 0), ("seed", 0), ("status", "ok"), ("error", "")):
        if col not in runs:
            runs[col] = np.arange(len(runs)) if default is None else default
    head = ["run_id", "index", "replicate", "seed", "status", "error"]
    runs = runs[head + factors + [m for m in metrics if m in runs] + [c for c in ("what_if",) if c in runs]]
    runs.to_csv(root / "runs.csv", index=False)
    meta = {
        "experiment": name,
        "description": f"Synthetic {name} results for the analysis tests.",
        "factors": factors,
        "metrics": metrics,
        "started": "2024-05-01T10:00:00+00:00",
        "finished": "2024-05-01T10:03:12+00:00",
        "executor": "local (2 processes)",
        "balloonsim_version": "0.1.0",
    }
    (root / "metadata.json").write_text(json.dumps(meta, indent=2))
    levels = {f: list(pd.unique(runs[f].dropna())) for f in factors}  # design order: first appearance
    toml = [f'name = "{name}"', "replications = 1", "seed = 1", "", "[factors]"]
    toml += [f'"{f}" = {json.dumps([_py(v) for v in lv])}' for f, lv in levels.items()]
    (root / "experiment.toml").write_text("\n".join(toml) + "\n")
    if timeseries is not None:
        if ts_as_directory:
            part_dir = root / "timeseries.parquet"
            part_dir.mkdir(exist_ok=True)
            half = timeseries["run_id"].isin(timeseries["run_id"].unique()[::2])
            timeseries[half].to_parquet(part_dir / "part-0.parquet", index=False)
            timeseries[~half].to_parquet(part_dir / "part-1.parquet", index=False)
        else:
            timeseries.to_parquet(root / "timeseries.parquet", index=False)
    if events is not None:
        if events_as_parquet:
            events.to_parquet(root / "events.parquet", index=False)
        else:
            events.to_csv(root / "events.csv", index=False)
    return root


def _py(v):
    return v.item() if hasattr(v, "item") else v


def planted(root: Path, kmalloc_mean: float = 5.0, altmap_mean: float = 1.0, n: int = 20, seed: int = 1) -> Path:
    """Two strategies, one regime; oom_kills Poisson with the given means; stall_fraction equal in law.

    Each metric has its own random stream (seeded) so the equal pair does not change when the planted
    means do;
    with the default seeds neither equal pair is significant (Mann-Whitney p = 0.97 for stall_fraction).
    """
    oom_rng = np.random.default_rng(seed)
    stall_rng = np.random.default_rng(1)
    oom = {s: oom_rng.poisson(lam, n) for s, lam in (("kmalloc", kmalloc_mean), ("altmap", altmap_mean))}
    stall = {s: stall_rng.beta(2, 20, n) for s in ("kmalloc", "altmap")}
    rows = []
    for strategy in ("kmalloc", "altmap"):
        for i in range(n):
            rows.append(
                {
                    "memmap.strategy": strategy,
                    "driver.name": "xen",
                    "replicate": i,
                    "seed": 1000 + i,
                    "oom_kills": int(oom[strategy][i]),
                    "stall_fraction": float(stall[strategy][i]),
                    "guest_crashed": False,
                }
            )
    runs = pd.DataFrame(rows)
    return write_results(
        root, runs, ["memmap.strategy", "driver.name"], ["oom_kills", "stall_fraction", "guest_crashed"]
    )


def realistic(
    root: Path,
    seeds: int = 10,
    *,
    with_events: bool = True,
    ts_as_directory: bool = False,
    events_as_parquet: bool = False,
    seed: int = 7,
) -> Path:
    """3 strategies x 2 drivers x 4 onlining delays x seeds, with time series and (optionally) events.

    Planted truths: kmalloc's OOM kills grow with the onlining delay; altmap crashes on xen (and often on
    hyperv) because the memmap lands in unbacked memory; altmap leaves no gigantic pages.
    """
    rng = np.random.default_rng(seed)
    strategies = ["kmalloc", "altmap", "subrange-hint"]
    drivers = ["xen", "hyperv"]
    delays = [0, 2, 5, 10]
    rows, series, events = [], [], []
    design = itertools.product(strategies, drivers, delays)
    for index, (strategy, driver, delay) in enumerate(design):
        for rep in range(seeds):
            run_id = f"{strategy[:3]}-{driver}-{delay}-{rep}"
            row, ts, ev = _one_run(rng, run_id, strategy, driver, delay)
            row.update({"run_id": run_id, "index": index, "replicate": rep, "seed": int(rng.integers(1 << 31))})
            rows.append(row)
            series.append(ts)
            events.append(ev)
    runs = pd.DataFrame(rows)
    runs["guest.block_size"] = "128M"
    factors = ["memmap.strategy", "driver.name", "onlining.delay_s", "guest.block_size"]
    return write_results(
        root,
        runs,
        factors,
        METRICS,
        timeseries=pd.concat(series, ignore_index=True),
        events=pd.concat(events, ignore_index=True) if with_events else None,
        name="quickstart-synthetic",
        ts_as_directory=ts_as_directory,
        events_as_parquet=events_as_parquet,
    )


def _one_run(rng: np.random.Generator, run_id: str, strategy: str, driver: str, delay: float):
    p_crash = {"xen": 0.95, "hyperv": 0.6}[driver] if strategy == "altmap" else 0.0
    crashed = bool(rng.random() < p_crash)
    crash_time = float(rng.uniform(12, 40)) if crashed else float("nan")
    sim_time = crash_time if crashed else 120.0
    requests = 8
    enomem = int(rng.binomial(requests, min(0.08 * delay, 0.9))) if strategy == "kmalloc" else 0
    ok = requests - enomem
    lam = {"kmalloc": 0.3 + 0.6 * delay, "altmap": 0.3 + 0.08 * delay, "subrange-hint": 0.3 + 0.1 * delay}[strategy]
    oom = int(rng.poisson(lam * (sim_time / 120)))
    memmap = ok * MEMMAP_PER_BLOCK
    kmalloc = {"kmalloc": memmap, "altmap": 0, "subrange-hint": memmap // 8}[strategy]
    in_range = memmap - kmalloc
    remote = kmalloc // 4 if driver == "hyperv" else 0
    backed_fraction = 0.5 if driver == "hyperv" else 0.75
    unbacked = int(memmap * (1 - backed_fraction)) if strategy != "subrange-hint" else 0
    per_block_usable = BLOCK - (MEMMAP_PER_BLOCK if strategy != "kmalloc" else 0)
    usable = int(ok * per_block_usable * backed_fraction) if not crashed else 0
    start = 2 * GiB
    p50 = delay + float(rng.exponential(0.5))
    row = {
        "memmap.strategy": strategy,
        "driver.name": driver,
        "onlining.delay_s": delay,
        "oom_kills": oom,
        "stall_fraction": float(
            np.clip(0.02 + 0.015 * delay * (1.6 if strategy == "kmalloc" else 0.5) + rng.normal(0, 0.01), 0, 1)
        ),
        "hotadd_requests": requests,
        "hotadd_ok": ok,
        "hotadd_enomem": enomem,
        "hotadd_einval": 0,
        "guest_crashed": crashed,
        "crash_time_s": crash_time,
        "memmap_bytes_kmalloc": kmalloc,
        "memmap_bytes_in_range": in_range,
        "memmap_bytes_remote": remote,
        "memmap_bytes_unbacked": unbacked,
        "usable_bytes_added": usable,
        "time_to_usable_p50_s": p50,
        "time_to_usable_p95_s": p50 + float(rng.exponential(1.5)),
        "memtotal_start_bytes": start,
        "memtotal_end_bytes": start + usable,
        "gigantic_pages_end": 0 if strategy == "altmap" else ok // 8,
        "blocks_removable_end": ok - int(rng.binomial(ok, 0.1)),
        "base_page_fallbacks": 0,
        "events": 0,
        "sim_time_s": sim_time,
    }
    ts, ev = _series(rng, run_id, strategy, delay, ok, enomem, oom, crash_time, sim_time, backed_fraction)
    row["events"] = len(ev)
    return row, ts, ev


def _series(rng, run_id, strategy, delay, ok, enomem, oom, crash_time, sim_time, backed_fraction):
    t = np.arange(0, int(sim_time) + 1, 1.0)
    start = 2 * GiB
    adds = 10 + 3 * np.arange(ok + enomem)
    add_ok = np.ones(len(adds), dtype=bool)
    if enomem:
        add_ok[rng.choice(len(adds), enomem, replace=False)] = False
    onlines = adds[add_ok] + delay
    per_block = BLOCK * backed_fraction - (MEMMAP_PER_BLOCK if strategy != "kmalloc" else 0)
    blocks_added = (adds[add_ok][None, :] <= t[:, None]).sum(axis=1)
    blocks_online = (onlines[None, :] <= t[:, None]).sum(axis=1)
    memtotal = start + blocks_online * per_block
    demand = 1.2 * GiB + (t / 120) * 1.6 * GiB + rng.normal(0, 20 * MiB, len(t))
    pagecache = np.maximum(300 * MiB - t * 1.5 * MiB, 60 * MiB)
    pending_memmap = (blocks_added - blocks_online) * MEMMAP_PER_BLOCK if strategy == "kmalloc" else 0
    memfree = np.maximum(memtotal - demand - pagecache - pending_memmap, 16 * MiB)
    target = np.where(t < 8, start, start + 1.2 * GiB)
    ts = pd.DataFrame(
        {
            "run_id": run_id,
            "t": t,
            "memtotal_bytes": memtotal,
            "memfree_bytes": memfree,
            "demand_bytes": demand,
            "pagecache_bytes": pagecache,
            "target_bytes": target,
            "blocks_added": blocks_added,
            "blocks_online": blocks_online,
            "stalled": (memfree <= 64 * MiB).astype(int),
        }
    )
    ev = [(8.0, "hotadd_request", -1, "1.2 GiB")]
    for i, (when, good) in enumerate(zip(adds, add_ok, strict=True)):
        if when <= sim_time:
            ev.append((float(when), "add_memory", i, "ok" if good else "-ENOMEM"))
    for i, when in enumerate(onlines):
        if when <= sim_time:
            ev.append((float(when), "online", i, "online_movable"))
    for when in np.sort(rng.uniform(min(20.0, sim_time), sim_time, oom)):
        ev.append((float(when), "oom_kill", -1, "task killed"))
    if not np.isnan(crash_time):
        ev.append((crash_time, "crash", 0, "memmap write to unbacked page"))
    events = pd.DataFrame(ev, columns=["t", "kind", "block", "detail"])
    events.insert(0, "run_id", run_id)
    return ts, events


def table_factor(root: Path, n: int = 4) -> Path:
    """A factor whose levels are tables, written as the runner does: canonical JSON (sorted keys) in runs.csv
    and the experiment as resolved (design order, keys as written) in metadata.json.

    Runs are written in an order unlike the design, so only the design can give the level order. Planted:
    altmap crashes on every run unless the hyperv request is aligned (deterministic), and the xen levels
    differ in gigantic pages.
    """
    design = [
        {"name": "xen", "populate_memmap_first": True},
        {"name": "hyperv", "request_offset": "2M"},
        {"name": "xen"},
    ]
    rng = np.random.default_rng(5)
    rows = []
    for level in reversed(design):
        for strategy in ("altmap", "kmalloc"):
            for i in range(n):
                crash = strategy == "altmap" and level != design[0]
                rows.append(
                    {
                        "memmap.strategy": strategy,
                        "driver": json.dumps(level, sort_keys=True, separators=(",", ":")),
                        "guest.movable_node": i % 2 == 0,
                        "guest_crashed": "true" if crash else "false",
                        "gigantic_pages_end": 0 if strategy == "altmap" else (3 if level == design[2] else 1),
                        "stall_fraction": float(rng.beta(2, 20)),
                    }
                )
    factors = ["memmap.strategy", "driver", "guest.movable_node"]
    root = write_results(root, pd.DataFrame(rows), factors, ["guest_crashed", "gigantic_pages_end", "stall_fraction"])
    meta = json.loads((root / "metadata.json").read_text())
    meta["source"] = {
        "resolved": {
            "seed": 3,
            "base": {"duration": "10m", "guest": {"hugepages": True}},
            "factors": {
                "memmap.strategy": ["kmalloc", "altmap"],
                "driver": design,
                "guest.movable_node": [False, True],
            },
        }
    }
    (root / "metadata.json").write_text(json.dumps(meta, indent=2))
    return root


def deterministic(root: Path, n: int = 3) -> Path:
    """Two block sizes x kmalloc/altmap, n runs each, like the real gigantic-pages study.

    gigantic_pages_end is deterministic: kmalloc 18 and altmap 0 in every run when guest.block_size = 128M,
    both 4 when 2G (identical). stall_fraction is noise, equal in law: never a finding. With 3 vs 3 runs no
    Mann-Whitney test can be significant after Holm.
    """
    rng = np.random.default_rng(9)
    rows = []
    for size in ("128M", "2G"):
        for strategy in ("kmalloc", "altmap"):
            for _ in range(n):
                pages = 4 if size == "2G" else (18 if strategy == "kmalloc" else 0)
                rows.append(
                    {
                        "guest.block_size": size,
                        "memmap.strategy": strategy,
                        "gigantic_pages_end": pages,
                        "stall_fraction": float(rng.beta(2, 20)),
                    }
                )
    factors = ["guest.block_size", "memmap.strategy"]
    return write_results(root, pd.DataFrame(rows), factors, ["gigantic_pages_end", "stall_fraction"])

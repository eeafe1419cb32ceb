"""Sweep throughput: an experiment run with `--jobs 1`, `--jobs 2` and `--dask local`, the runner's memory, and
the analysis that `balloonsim run` does after a `--jobs 2` batch against that batch.

Each mode runs in a fresh subprocess into a fresh directory, the modes interleaved and the best of each kept.
Beside them, the machine's parallel capacity at that time: what two bare-SimPy processes get together against
one alone, the ceiling of any `--jobs 2` speedup measured in the same minutes.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from balloonsim.bench.child import run_child
from balloonsim.bench.event_rate import bare_simpy
from balloonsim.bench.machine import REPOSITORY, best_run
from balloonsim.bench.plan import Plan


def default_experiment() -> Path:
    return REPOSITORY / "experiments" / "quickstart.toml"


def sweep_in_subprocess(
    experiment: str | Path, jobs: int, dask: str | None, replications: int, report: bool = False
) -> dict[str, Any]:
    """`sweep_point` (balloonsim.bench.sweep_point) in a fresh subprocess writing into a fresh temporary directory
    (removed afterwards)."""
    tmp = tempfile.mkdtemp(prefix="balloonsim-bench-")
    try:
        out = run_child(
            {
                "task": "sweep",
                "experiment": str(experiment),
                "jobs": jobs,
                "dask": dask,
                "replications": replications,
                "out": str(Path(tmp) / "out"),
                "report": report,
            }
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out.setdefault("mode", f"dask {dask}" if dask else f"jobs {jobs}")
    return out


def spin_bare(seconds: float, start_at: float) -> dict[str, Any]:
    """In this process: from wall-clock `start_at`, bare SimPy batches of 50,000 timeouts for `seconds`."""
    time.sleep(max(0.0, start_at - time.time()))
    started = time.perf_counter()
    events = 0
    while time.perf_counter() - started < seconds:
        events += bare_simpy(50_000)["events"]
    return {"events_per_s": events / (time.perf_counter() - started)}


def parallel_capacity(seconds: float, rounds: int = 2) -> dict[str, Any]:
    """What two processes get from this machine right now: bare SimPy alone, then two at once, `rounds` times.

    `capacity` = (best sum of the two rates) / (best rate alone): 2.0 on two idle cores; the ceiling for any
    `--jobs 2` speedup measured at the same time."""

    def together(n: int) -> list[float]:
        start_at = time.time() + 2.0  # after every child has imported
        cmd = [
            sys.executable,
            "-m",
            "balloonsim.bench",
            json.dumps({"task": "spin", "seconds": seconds, "start_at": start_at}),
        ]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(n)]
        rates = []
        for proc in procs:
            out, _ = proc.communicate(timeout=60 + seconds)
            rates.append(json.loads(out.strip().splitlines()[-1])["events_per_s"])
        return rates

    alone: list[float] = []
    two: list[list[float]] = []
    try:
        for _ in range(rounds):
            alone += together(1)
            two.append(together(2))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError, KeyError) as exc:
        return {"error": str(exc)}
    return {
        "alone_events_per_s": max(alone),
        "two_events_per_s": max(two, key=sum),
        "all_alone": [round(a) for a in alone],
        "all_two": [[round(x) for x in t] for t in two],
        "capacity": max(sum(t) for t in two) / max(alone),
    }


SWEEP_MODES: tuple[tuple[int, str | None], ...] = ((1, None), (2, None), (2, "local"))


def speedup_ceiling(jobs1: dict[str, Any], jobs2: dict[str, Any]) -> float | None:
    """The speedup `--jobs 2` would have over `--jobs 1` if its batch took exactly half of `--jobs 1`'s: `--jobs 1`'s
    wall over `--jobs 2`'s time outside its batch (start-up, the check, the workers' start and stop) plus half of
    `--jobs 1`'s batch. What the fixed costs leave possible, whatever the workers do: a small batch's ceiling."""
    try:
        outside = jobs2["wall_s"] - jobs2["batch_s"]
        ideal = outside + jobs1["batch_s"] / 2
        return jobs1["wall_s"] / ideal if ideal > 0 else None
    except (KeyError, TypeError):
        return None


def sweeps(plan: Plan, progress: Callable[[str], None], experiment: str | Path | None = None) -> dict[str, Any]:
    """Rounds of: the machine's parallel capacity, then each mode; best of each mode kept, and each round's
    ratios (measured minutes apart from the other rounds', seconds apart within one); then the runner's RSS at
    `growth` x the runs."""
    experiment = Path(experiment) if experiment else default_experiment()
    if not experiment.exists():
        return {"skipped": f"{experiment} not found"}
    tries: dict[str, list[dict[str, Any]]] = {}
    rounds: list[dict[str, Any]] = []
    analyses: list[dict[str, Any]] = []  # `jobs 2` then the analysis `balloonsim run` does after it
    for rep in range(plan.sweep_repeats):
        progress(f"sweeps: parallel capacity of this machine now (bare SimPy, 1 then 2 processes) ({rep + 1})")
        capacity = parallel_capacity(plan.capacity_seconds, plan.capacity_rounds)
        this: dict[str, Any] = {"capacity": capacity.get("capacity")}
        for jobs, dask in SWEEP_MODES:
            mode = f"dask {dask}" if dask else f"jobs {jobs}"
            progress(f"sweeps: {mode} ({rep + 1}/{plan.sweep_repeats})")
            point = sweep_in_subprocess(experiment, jobs, dask, plan.sweep_replications)
            tries.setdefault(mode, []).append(point)
            this[mode] = point.get("wall_s")
        if this.get("jobs 1") and this.get("jobs 2"):
            this["speedup_jobs2"] = this["jobs 1"] / this["jobs 2"]
        if this.get("jobs 2") and this.get("dask local"):
            this["dask_overhead_pct"] = (this["dask local"] / this["jobs 2"] - 1) * 100
        progress(f"sweeps: jobs 2 and its analysis ({rep + 1}/{plan.sweep_repeats})")
        analysed = sweep_in_subprocess(experiment, 2, None, plan.sweep_replications, report=True)
        analyses.append(analysed)
        this["analysis_over_batch"] = analysed.get("analysis_over_batch")
        rounds.append(this)
    modes = {}
    for mode, runs in tries.items():
        good = [r for r in runs if "error" not in r]
        modes[mode] = (
            {**best_run(good, "wall_s"), "all_runs_per_s": [round(r["runs_per_s"], 2) for r in good]}
            if good
            else runs[-1]
        )
    capacities = [r["capacity"] for r in rounds if r.get("capacity")]
    out: dict[str, Any] = {"experiment": str(experiment), "rounds": rounds, "modes": modes}
    if capacities:
        out["parallel_capacity"] = {"capacity": max(capacities), "all": [round(c, 2) for c in capacities]}
    j1, j2, dk = modes.get("jobs 1", {}), modes.get("jobs 2", {}), modes.get("dask local", {})
    if "runs_per_s" in j1 and "runs_per_s" in j2:
        out["speedup_jobs2"] = j2["runs_per_s"] / j1["runs_per_s"]
        ceiling = speedup_ceiling(j1, j2)
        if ceiling is not None:
            out["speedup_jobs2_ceiling"] = ceiling
        # the CPU the whole batch took (runner and workers) with two worker processes over in one process: what
        # parallelism costs in work, whatever the machine's load did to the wall times
        cpu1 = j1.get("runner_cpu_s", 0.0) + j1.get("workers_cpu_s", 0.0)
        cpu2 = j2.get("runner_cpu_s", 0.0) + j2.get("workers_cpu_s", 0.0)
        if cpu1 > 0:
            out["cpu_jobs2_over_jobs1"] = cpu2 / cpu1
    if "wall_s" in j2 and "wall_s" in dk:
        out["dask_overhead_pct"] = (dk["wall_s"] / j2["wall_s"] - 1) * 100
        out["dask_batch_overhead_pct"] = (dk["batch_s"] / j2["batch_s"] - 1) * 100
        per_round = [r["dask_overhead_pct"] for r in rounds if "dask_overhead_pct" in r]
        if per_round:
            out["dask_overhead_pct_median_round"] = statistics.median(per_round)
    ratios = [a["analysis_over_batch"] for a in analyses if "analysis_over_batch" in a]
    if ratios:
        best = min((a for a in analyses if "analysis_over_batch" in a), key=lambda a: a["analysis_over_batch"])
        out["analysis"] = {
            "analysis_s": best["analysis_s"],
            "batch_s": best["batch_s"],
            "analysis_over_batch": best["analysis_over_batch"],
            "median_over_batch": statistics.median(ratios),
            "all_over_batch": [round(r, 2) for r in ratios],
        }
    bigger = plan.sweep_replications * plan.growth
    progress(f"sweeps: jobs 2, {plan.growth}x the runs")
    big = sweep_in_subprocess(experiment, 2, None, bigger)
    out["growth"] = big
    out["growth_factor"] = plan.growth
    small_rss = [r["runner_peak_rss_mib"] for r in tries.get("jobs 2", []) if "runner_peak_rss_mib" in r]
    if small_rss and "runner_peak_rss_mib" in big:
        out["runner_rss_growth"] = big["runner_peak_rss_mib"] / max(small_rss)
    return out

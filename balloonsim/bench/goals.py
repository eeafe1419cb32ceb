"""The tool's speed and scale goals, checked against whatever a run measured.

Each goal is a ratio of figures measured side by side (or a memory figure), so it holds on a noisy host.
"""

from __future__ import annotations

from typing import Any

from balloonsim.bench.scale import SCALE_STRATEGIES, block_spread
from balloonsim.units import GiB, TiB

GOAL_SIM_SECONDS_RATIO = 0.25  # reference simulated s per wall s over bare SimPy events/s: what users feel
GOAL_ONE_AT_A_TIME = 1.5  # per-block cost adding 8,192 blocks one at a time over adding 512: linear growth
GOAL_CLI_RSS_16T_MIB = 300.0  # `balloonsim hotplug` of 16 TiB as a command, imports included
GOAL_BLOCK_SPREAD = 1.25  # max/min time per block, 16 GiB .. 16 TiB: hot-add cost linear in the size
GOAL_RSS_16T_MIB = 300.0  # peak RSS of the 16 TiB hot-add: a laptop can model the largest guests
GOAL_SPEEDUP_2 = 1.8  # --jobs 2 over --jobs 1: sweeps use a second core
GOAL_DASK_OVERHEAD_PCT = 15.0  # --dask local against local processes: Dask costs little when used
GOAL_RSS_GROWTH = 1.10  # runner peak RSS, 4x the runs over 1x: memory flat in the batch size (under 10% growth)
GOAL_ANALYSIS_OVER_BATCH = 1.0  # the analysis after a run (analyze, plots, report) shorter than its simulations


def evaluate_goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal that what was measured can speak to: what, measured value, goal, reached (None: not measured)."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, op: str, goal: float, note: str = "") -> None:
        reached = None if value is None else (value >= goal if op == ">=" else value <= goal)
        out.append({"measure": name, "value": value, "op": op, "goal": goal, "reached": reached, "note": note})

    ref = results.get("reference", {})
    bare = results.get("bare", {})
    if "reference" in results:
        sim_ratio = ref["sim_s_per_wall_s"] / bare["events_per_s"] if bare.get("events_per_s") else None
        add(
            "reference simulated s per wall s / bare SimPy events/s",
            sim_ratio,
            ">=",
            GOAL_SIM_SECONDS_RATIO,
            "" if sim_ratio is not None else "needs bare too",
        )
    if "scale" in results:
        points = results["scale"]["points"]
        for strategy in SCALE_STRATEGIES:
            spread, span = block_spread(points, strategy)
            full = span == "16G..16T"
            add(
                f"time per block max/min, {strategy} {span}".rstrip(),
                spread,
                "<=",
                GOAL_BLOCK_SPREAD,
                "" if full else "partial range (16 TiB not run)",
            )
        for strategy in SCALE_STRATEGIES:
            p16 = next((p for p in points if p.get("strategy") == strategy and p.get("size") == 16 * TiB), None)
            add(
                f"peak RSS MiB at 16 TiB, {strategy}",
                p16.get("peak_rss_mib") if p16 else None,
                "<=",
                GOAL_RSS_16T_MIB,
                "" if p16 else "16 TiB not run",
            )
        per = {
            (p.get("strategy"), p.get("size")): p.get("us_per_block")
            for p in results["scale"].get("one_at_a_time", [])
            if p.get("ok")
        }
        for strategy in SCALE_STRATEGIES:
            small, large = per.get((strategy, 64 * GiB)), per.get((strategy, 1 * TiB))
            add(
                f"one block at a time, us/block 1 TiB (8,192 blocks) / 64 GiB (512), {strategy}",
                large / small if small and large else None,
                "<=",
                GOAL_ONE_AT_A_TIME,
                "" if small and large else "not both finished within the budget",
            )
        for point in results["scale"].get("cli", []):
            if point.get("size") == 16 * TiB:
                add(
                    f"balloonsim hotplug 16 TiB peak RSS MiB, {point['strategy']}",
                    point.get("peak_rss_mib") if point.get("exit") == 0 else None,
                    "<=",
                    GOAL_CLI_RSS_16T_MIB,
                    "" if point.get("exit") == 0 else f"exit {point.get('exit')}",
                )
    sw = results.get("sweeps")
    if sw is not None:
        runs = sw.get("modes", {}).get("jobs 1", {}).get("runs") or 0
        small = f"{runs} runs only: start-up weighs heavily" if 0 < runs < 100 else ""
        ceiling = sw.get("speedup_jobs2_ceiling")  # what the fixed costs leave possible (sweeps.speedup_ceiling)
        jobs_note = small + (f"; ceiling {ceiling:.2f} (a batch exactly halved)" if small and ceiling else "")
        add("--jobs 2 runs/s / --jobs 1 runs/s", sw.get("speedup_jobs2"), ">=", GOAL_SPEEDUP_2, jobs_note)
        cap = sw.get("parallel_capacity", {}).get("capacity")
        if cap is not None and cap < GOAL_SPEEDUP_2:
            out[-1]["note"] = (out[-1]["note"] + "; " if out[-1]["note"] else "") + (
                f"the machine gave two processes at most {cap:.2f}x one meanwhile"
            )
        add("--dask local wall over --jobs 2, %", sw.get("dask_overhead_pct"), "<=", GOAL_DASK_OVERHEAD_PCT, small)
        add(
            f"runner peak RSS, {sw.get('growth_factor', '?')}x runs / 1x",
            sw.get("runner_rss_growth"),
            "<=",
            GOAL_RSS_GROWTH,
        )
        analysis = sw.get("analysis", {})
        add(
            "analysis after a --jobs 2 run, wall / its batch's wall",
            analysis.get("analysis_over_batch"),
            "<=",
            GOAL_ANALYSIS_OVER_BATCH,
            f"median of rounds {analysis['median_over_batch']:.2f}" if analysis else "not measured",
        )
    return out

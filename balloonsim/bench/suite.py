"""`measure()`: run the chosen sections in order and gather their figures, the machine and the goals."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from balloonsim.bench.bytecode import cache_bytecode
from balloonsim.bench.event_rate import bare_and_reference
from balloonsim.bench.goals import evaluate_goals
from balloonsim.bench.machine import CpuWatch, load_average, machine, wait_quiet
from balloonsim.bench.plan import FULL, QUICK, SECTIONS, Plan, parse_only
from balloonsim.bench.scale import scale
from balloonsim.bench.startup import startup
from balloonsim.bench.sweeps import sweeps


def measure(
    quick: bool = False,
    only: Iterable[str] | None = None,
    experiment: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    plan: Plan | None = None,
    wait_quiet_s: float = 0.0,
) -> dict[str, Any]:
    """Run the chosen sections; a JSON-ready dict with machine, results and goals.

    `wait_quiet_s` > 0: before each section, wait up to that long for other processes to leave the CPUs
    (a shared host); what they used is reported per section either way (`host_cpu`)."""
    sections = parse_only(only)
    plan = plan or (QUICK if quick else FULL)
    progress = progress or (lambda _msg: None)
    quiet_at_start: dict[str, float | None] = {}

    def settle(section: str) -> None:
        if wait_quiet_s > 0:
            progress(f"waiting up to {wait_quiet_s:.0f} s for a quiet host before {section}")
            quiet_at_start[section] = wait_quiet(wait_quiet_s)

    started = time.perf_counter()
    out: dict[str, Any] = {
        "quick": quick,
        "sections": [s for s in SECTIONS if s in sections],
        "machine": machine(),
        "bytecode": cache_bytecode(sys.executable),  # before any process is timed (balloonsim.bench.bytecode)
        "load_before": load_average(),
    }
    results: dict[str, Any] = {}
    host: dict[str, Any] = {}
    whole = CpuWatch()
    if sections & {"bare", "reference"}:
        settle("bare+reference")
        progress("bare SimPy and the reference scenario")
        watch = CpuWatch()
        results.update(bare_and_reference(plan, sections))
        host["bare+reference"] = watch.result()
    if "scale" in sections:
        settle("scale")
        watch = CpuWatch()
        results["scale"] = scale(plan, progress)
        host["scale"] = watch.result()
    if "sweeps" in sections:
        settle("sweeps")
        watch = CpuWatch()
        results["sweeps"] = sweeps(plan, progress, experiment)
        host["sweeps"] = watch.result()
    if "startup" in sections:
        settle("startup")
        progress("startup: balloonsim commands against `import click`")
        watch = CpuWatch()
        results["startup"] = startup(plan.startup_repeats)
        host["startup"] = watch.result()
    host["all"] = whole.result()
    if quiet_at_start:
        out["others_cores_at_section_start"] = quiet_at_start
    out["results"] = results
    out["host_cpu"] = host
    out["goals"] = evaluate_goals(results)
    out["load_after"] = load_average()
    out["bench_wall_s"] = time.perf_counter() - started
    return out

"""Hot-add scale: `balloonsim hotplug`'s path for 16 GiB .. 16 TiB in 128 MiB blocks, altmap and kmalloc.

Each (size, strategy) runs in a fresh subprocess so its peak RSS is its own; the time per block is measured at
the margin (the guest's boot and one block taken out), which is what should stay flat as the size grows.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from balloonsim.bench.child import run_child
from balloonsim.bench.machine import CpuWatch, peak_rss_mib
from balloonsim.bench.plan import Plan
from balloonsim.hotplug import HotplugSpec, run_hotplug
from balloonsim.units import GiB, MiB, align_up, format_size

BLOCK = 128 * MiB
SCALE_STRATEGIES = ("altmap", "kmalloc")
LOWMEM_LIMIT = 3 * GiB  # boot RAM below 4 GiB stops at 3 GiB (GuestConfig.lowmem_limit); the rest starts at 4 GiB


def scale_boot(size: int, strategy: str) -> int:
    """Boot memory for the hot-add: kmalloc takes the memmap (1/64 of the size) from online memory, so it gets
    that plus 1/8 of it and 2 GiB for the boot memory's own memmap, the kernel and the watermarks."""
    if strategy != "kmalloc":
        return 2 * GiB
    need = size // 64 + size // 512 + 2 * GiB
    return align_up(need, GiB)


def scale_spec(size: int, strategy: str, block: int = BLOCK) -> HotplugSpec:
    """The HotplugSpec of one scale point: the range starts at the first GiB above boot memory."""
    boot = scale_boot(size, strategy)
    boot_end = boot if boot <= LOWMEM_LIMIT else boot - LOWMEM_LIMIT + 4 * GiB
    at = max(4 * GiB, align_up(boot_end, GiB))
    return HotplugSpec(boot=[boot], size=size, at=at, block_size=block, strategy=strategy)


def _timed_hotplug(spec: HotplugSpec) -> tuple[float, list[str], int | None]:
    """Wall time of run_hotplug(spec), its failures, and the blocks online at the end (the report is dropped)."""
    started = time.perf_counter()
    report = run_hotplug(spec)
    wall = time.perf_counter() - started
    errors = [f"{call} = {ret}" for call, ret in report.calls if ret] + ([report.crash] if report.crash else [])
    online = report.phases[-1].meminfo.get("blocks_online") if report.phases else None
    return wall, errors, online


def scale_point(
    size: int, strategy: str, block: int = BLOCK, min_total_s: float = 2.0, max_repeats: int = 10
) -> dict[str, Any]:
    """In this process: hot-add and online `size`; wall time, time per block, and this process's peak RSS.

    After a one-block warm-up the full size runs at least twice and until `min_total_s` has passed (at most
    `max_repeats` times); the best wall time is kept.  `fixed_s` is the same guest hot-adding one block (boot,
    meminfo snapshots; run before each full run, best kept), so `marginal_us_per_block` is what each further
    block costs.  The peak RSS is taken after the first full run; run this in a fresh process
    (`scale_in_subprocess`) so it is this size's."""
    spec = scale_spec(size, strategy, block)
    one = replace(spec, size=block)
    _timed_hotplug(one)  # warm-up
    rss_before = peak_rss_mib()
    watch = CpuWatch()
    walls: list[float] = []
    fixed_runs: list[float] = []
    peak = None
    while len(walls) < max_repeats and (len(walls) < 2 or sum(walls) < min_total_s):
        fixed_runs.append(_timed_hotplug(one)[0])  # interleaved, so load on the host hits both alike
        wall, errors, online = _timed_hotplug(spec)
        gc.collect()
        walls.append(wall)
        if peak is None:
            peak = peak_rss_mib()
    fixed = min(fixed_runs)
    wall = min(walls)
    blocks = size // block
    return {
        "size": size,
        "strategy": strategy,
        "boot": spec.boot[0],
        "at": spec.at,
        "blocks": blocks,
        "blocks_online": online,
        "ok": not errors and online == blocks,
        "errors": errors,
        "wall_s": wall,
        "repeats": len(walls),
        "all_wall_s": [round(w, 4) for w in walls],
        "us_per_block": wall / blocks * 1e6,
        "fixed_s": fixed,
        "marginal_us_per_block": (wall - fixed) / (blocks - 1) * 1e6 if blocks > 1 else None,
        "rss_before_mib": rss_before,
        "peak_rss_mib": peak,
        "others_cores": watch.result().get("others_cores"),
    }


def scale_in_subprocess(size: int, strategy: str, block: int = BLOCK) -> dict[str, Any]:
    """`scale_point` in a fresh subprocess, so the peak RSS is that size's alone."""
    out = run_child({"task": "scale", "size": size, "strategy": strategy, "block": block})
    out.setdefault("size", size)
    out.setdefault("strategy", strategy)
    return out


def scale(plan: Plan, progress: Callable[[str], None]) -> dict[str, Any]:
    points = []
    for size in plan.scale_sizes:
        for strategy in SCALE_STRATEGIES:
            progress(f"scale: {format_size(size)} {strategy}")
            points.append(scale_in_subprocess(size, strategy))
    return {"block": BLOCK, "points": points}


def block_spread(points: list[dict[str, Any]], strategy: str) -> tuple[float | None, str]:
    """max/min marginal time per block over the sizes measured for `strategy`, and the size range."""
    mine = [p for p in points if p.get("strategy") == strategy and p.get("ok") and p.get("marginal_us_per_block")]
    if len(mine) < 2:
        return None, ""
    per = [p["marginal_us_per_block"] for p in mine]
    sizes = sorted(p["size"] for p in mine)
    return max(per) / min(per), f"{format_size(sizes[0])}..{format_size(sizes[-1])}"

"""Hot-add scale: 16 GiB .. 16 TiB in 128 MiB blocks, altmap and kmalloc, added two ways.

`range`: `balloonsim hotplug`'s path, one add_memory() of the whole range, then each block onlined. `blocks`:
as balloon drivers add memory, one add_memory() per block followed by its online, so any cost that grows with
the blocks already there shows as a growing time per block. Each (size, strategy, mode) runs in a fresh
subprocess so its peak RSS is its own; `range` measures the time per block at the margin (the guest's boot and
one block taken out); `blocks` runs under a time budget and reports how far it got and what the last blocks
cost. `cli_peak_rss` runs `balloonsim hotplug` itself and reports the command's peak RSS.
"""

from __future__ import annotations

import gc
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from balloonsim.bench.child import run_child
from balloonsim.bench.machine import CpuWatch, peak_rss_mib
from balloonsim.bench.plan import Plan
from balloonsim.hotplug import HotplugSpec, run_hotplug
from balloonsim.units import PAGE_SHIFT, GiB, MiB, align_up, format_size

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


def blocks_point(
    size: int,
    strategy: str,
    block: int = BLOCK,
    budget_s: float = 60.0,
    min_total_s: float = 2.0,
    max_repeats: int = 10,
) -> dict[str, Any]:
    """In this process: hot-add `size` one block at a time (add_memory of one block, then its online), as
    balloon drivers do, for at most `budget_s`; time per block overall and over the last tenth of the blocks
    added, and this process's peak RSS. Like `scale_point`, a size that finishes runs at least twice and until
    `min_total_s` has passed (at most `max_repeats` times), each time on a fresh guest, and the run with the best
    time per block is kept: 512 blocks take a few tens of milliseconds, too little for one run to say much. A
    run stopped by the budget or an error is not repeated."""
    runs: list[dict[str, Any]] = []
    while len(runs) < max_repeats and (len(runs) < 2 or sum(r["wall_s"] for r in runs) < min_total_s):
        run = _blocks_once(size, strategy, block, budget_s)
        gc.collect()
        runs.append(run)
        if not run["ok"]:
            break
    best = min(runs, key=lambda r: r["us_per_block"] if r["us_per_block"] is not None else float("inf"))
    return {
        **best,
        "repeats": len(runs),
        "all_us_per_block": [round(r["us_per_block"], 1) for r in runs if r["us_per_block"] is not None],
        "peak_rss_mib": peak_rss_mib(),
    }


def _blocks_once(size: int, strategy: str, block: int, budget_s: float) -> dict[str, Any]:
    """One run of `blocks_point` on a fresh guest."""
    from balloonsim.kernel import Guest
    from balloonsim.kernel.extents import Extents
    from balloonsim.memmap import get_strategy

    spec = scale_spec(size, strategy, block)
    guest = Guest(spec.guest().config(), get_strategy(strategy, {}, key=""))
    guest.backing.populate(spec.at >> PAGE_SHIFT, (spec.at + size) >> PAGE_SHIFT)
    blocks = size // block
    errors: list[str] = []
    stamps: list[float] = []
    enabled = gc.isenabled()
    gc.disable()  # as run_hotplug: no cyclic collections over the growing heap during the script
    started = time.perf_counter()
    try:
        for i in range(blocks):
            addr = spec.at + i * block
            span = Extents.span(addr >> PAGE_SHIFT, (addr + block) >> PAGE_SHIFT)
            ret = guest.add_memory(0, addr, block, hint=span) or guest.online_memory_block(addr // guest.block_size)
            stamps.append(time.perf_counter())
            if ret:
                errors.append(f"block {i}: {ret}")
                break
            if stamps[-1] - started > budget_s:
                break
    finally:
        if enabled:
            gc.enable()
    done = len(stamps) - len(errors)
    tail = max(1, done // 10)
    tail_s = stamps[done - 1] - stamps[done - 1 - tail] if done > tail else (stamps[-1] - started if stamps else 0)
    return {
        "mode": "blocks",
        "size": size,
        "strategy": strategy,
        "boot": spec.boot[0],
        "blocks": blocks,
        "blocks_done": done,
        "ok": not errors and done == blocks,
        "errors": errors,
        "budget_s": budget_s,
        "wall_s": stamps[-1] - started if stamps else 0.0,
        "us_per_block": (stamps[-1] - started) / len(stamps) * 1e6 if stamps else None,
        "last_tenth_us_per_block": tail_s / tail * 1e6 if done > 1 else None,
    }


def blocks_in_subprocess(size: int, strategy: str, budget_s: float) -> dict[str, Any]:
    out = run_child({"task": "blocks", "size": size, "strategy": strategy, "budget_s": budget_s})
    out.setdefault("size", size)
    out.setdefault("strategy", strategy)
    out.setdefault("mode", "blocks")
    return out


def cli_hotplug_argv(size: int, strategy: str) -> list[str]:
    spec = scale_spec(size, strategy)
    return [
        "hotplug",
        "--boot",
        format_size(spec.boot[0]),
        "--size",
        format_size(size),
        "--at",
        hex(spec.at or 0),
        "--block-size",
        format_size(BLOCK),
        "--strategy",
        strategy,
    ]


def cli_peak_rss(size: int, strategy: str) -> dict[str, Any]:
    """In this process: run `balloonsim hotplug` for `size` as a command and report its wall time and peak RSS
    (this process's only child, so RUSAGE_CHILDREN's maximum is the command's)."""
    exe = Path(sys.executable).parent / "balloonsim"
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "balloonsim.cli"]
    command = [*argv, *cli_hotplug_argv(size, strategy)]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "size": size,
        "strategy": strategy,
        "command": "balloonsim " + " ".join(command[len(argv) :]),
        "exit": proc.returncode,
        "wall_s": wall,
        "peak_rss_mib": rss,
    }


def scale(plan: Plan, progress: Callable[[str], None]) -> dict[str, Any]:
    points = []
    for size in plan.scale_sizes:
        for strategy in SCALE_STRATEGIES:
            progress(f"scale: {format_size(size)} {strategy}, one range")
            points.append(scale_in_subprocess(size, strategy))
    one_by_one = []
    for size in plan.block_sizes:
        for strategy in SCALE_STRATEGIES:
            progress(
                f"scale: {format_size(size)} {strategy}, one block at a time (at most {plan.block_budget_s:.0f} s)"
            )
            one_by_one.append(blocks_in_subprocess(size, strategy, plan.block_budget_s))
    cli = []
    for strategy in SCALE_STRATEGIES:
        progress(f"scale: balloonsim hotplug {format_size(plan.cli_size)} {strategy} (peak RSS of the command)")
        cli.append(run_child({"task": "cli_rss", "size": plan.cli_size, "strategy": strategy}))
    return {"block": BLOCK, "points": points, "one_at_a_time": one_by_one, "cli": cli}


def block_spread(points: list[dict[str, Any]], strategy: str) -> tuple[float | None, str]:
    """max/min marginal time per block over the sizes measured for `strategy`, and the size range."""
    mine = [p for p in points if p.get("strategy") == strategy and p.get("ok") and p.get("marginal_us_per_block")]
    if len(mine) < 2:
        return None, ""
    per = [p["marginal_us_per_block"] for p in mine]
    sizes = sorted(p["size"] for p in mine)
    return max(per) / min(per), f"{format_size(sizes[0])}..{format_size(sizes[-1])}"

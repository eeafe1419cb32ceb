"""Does adding memory one block at a time, as balloon drivers do, cost the same per block at any size?

    .venv/bin/python benchmarks/profile_linear_growth.py [--blocks 512,8192] [--strategies kmalloc,altmap]
    .venv/bin/python benchmarks/profile_linear_growth.py --blocks 8192 --strategies kmalloc --cprofile 20
    .venv/bin/python benchmarks/profile_linear_growth.py --other /path/to/other/.venv/bin/python

A driver (hv_balloon, virtio-mem, the Xen balloon) finds a free range above boot memory (allocate_resource(),
balloonsim.drivers.base.Driver.find_free_range), calls add_memory() for one 128 MiB block, and onlines it; then
the next. Each (strategy, blocks) point does that N times in a fresh guest and reports the wall time per block;
the ratio of the per-block cost at the largest N to that at the smallest is what should stay near 1 (a cost that
grows with N makes the whole add quadratic). `--whole` also times one add_memory() of the whole range (then
each block onlined), the `balloonsim hotplug` path.

The guest boots with what the kmalloc memmap of the largest range needs (1/64 of it from online memory, as
balloonsim.bench.scale.scale_boot gives it), the same boot for every N so that only N changes. `--other PYTHON`
runs the same points with another checkout's interpreter, alternating round by round (best of `--repeats`), so
that load on a shared host hits both alike; both print side by side.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import subprocess
import sys
import time
from types import SimpleNamespace

from balloonsim.units import GiB, MiB, align_up, parse_size

BLOCK = 128 * MiB
LOWMEM_LIMIT = 3 * GiB


def boot_for(blocks: int, strategy: str) -> int:
    """Boot memory for `blocks` hot-added blocks (balloonsim.bench.scale.scale_boot's rule)."""
    size = blocks * BLOCK
    if strategy != "kmalloc":
        return 2 * GiB
    return align_up(size // 64 + size // 512 + 2 * GiB, GiB)


def one_at_a_time(blocks: int, strategy: str, boot: int, whole: bool = False) -> float:
    """Wall seconds to add and online `blocks` blocks (one add_memory() each, or one for all with `whole`)."""
    from balloonsim.drivers.base import Driver
    from balloonsim.kernel import Guest, GuestConfig
    from balloonsim.kernel.extents import Extents
    from balloonsim.memmap import get_strategy
    from balloonsim.units import PAGE_SHIFT

    boot_end = boot if boot <= LOWMEM_LIMIT else boot - LOWMEM_LIMIT + 4 * GiB
    first = max(4 * GiB, align_up(boot_end, GiB))
    cfg = GuestConfig(boot=[boot], max_addr=first + blocks * BLOCK, block_size=BLOCK)
    guest = Guest(cfg, get_strategy(strategy, {}, key=""))
    driver = SimpleNamespace(guest=guest)  # find_free_range() reads only the driver's guest
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()  # as run_hotplug does: the cyclic collector would rescan the growing heap
    try:
        started = time.perf_counter()
        if whole:
            s, e = first >> PAGE_SHIFT, (first + blocks * BLOCK) >> PAGE_SHIFT
            guest.backing.populate(s, e)
            assert guest.add_memory(0, first, blocks * BLOCK, hint=Extents.span(s, e)) == 0
            for bid in sorted(guest.blocks):
                assert guest.online_memory_block(bid, "online") == 0
        else:
            for _ in range(blocks):
                start = Driver.find_free_range(driver, BLOCK, BLOCK)  # type: ignore[arg-type]
                assert start is not None
                s, e = start >> PAGE_SHIFT, (start + BLOCK) >> PAGE_SHIFT
                guest.backing.populate(s, e)
                assert guest.add_memory(0, start, BLOCK, hint=Extents.span(s, e)) == 0
                assert guest.online_memory_block(s // guest.block_pages, "online") == 0
        wall = time.perf_counter() - started
    finally:
        if enabled:
            gc.enable()
    assert guest.blocks_online == blocks
    return wall


def child(args: argparse.Namespace) -> None:
    blocks, strategy, boot, whole = args.child
    try:
        wall = one_at_a_time(int(blocks), strategy, int(boot), whole == "whole")
    except AssertionError:  # a call failed: -ENOMEM when the boot memory cannot hold the memmap
        print(json.dumps({"wall_s": None}))
        return
    print(json.dumps({"wall_s": wall}))


def run_point(python: str, blocks: int, strategy: str, boot: int, whole: bool, timeout: float) -> float | None:
    cmd = [python, __file__, "--child", str(blocks), strategy, str(boot), "whole" if whole else "each"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=timeout).stdout
    except subprocess.TimeoutExpired:
        return float("inf")
    return json.loads(out.strip().splitlines()[-1])["wall_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", default="512,8192", help="block counts, comma-separated (131072 = 16 TiB)")
    ap.add_argument("--strategies", default="kmalloc,altmap")
    ap.add_argument("--repeats", type=int, default=3, help="rounds; the best of each point is kept")
    ap.add_argument("--whole", action="store_true", help="also one add_memory() of the whole range")
    ap.add_argument(
        "--boot", help="boot memory for every point (default: what the largest range's kmalloc memmap needs)"
    )
    ap.add_argument("--other", help="another checkout's python, measured alternately")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per point before it is given up")
    ap.add_argument("--cprofile", type=int, metavar="N", help="profile one point in this process: top N functions")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    counts = [int(x) for x in args.blocks.split(",")]
    strategies = args.strategies.split(",")
    if args.cprofile:
        blocks, strategy = counts[-1], strategies[0]
        prof = cProfile.Profile()
        boot = parse_size(args.boot) if args.boot else boot_for(blocks, strategy)
        prof.runcall(one_at_a_time, blocks, strategy, boot, args.whole)
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.cprofile)
        return
    pythons = {"this": sys.executable} | ({"other": args.other} if args.other else {})
    modes = [False, True] if args.whole else [False]
    best: dict[tuple, float | None] = {}  # None: a call failed; inf: timed out
    for _ in range(args.repeats):
        for strategy in strategies:
            boot = parse_size(args.boot) if args.boot else boot_for(max(counts), strategy)
            for whole in modes:
                for n in counts:
                    for label, python in pythons.items():  # alternating, so load hits both alike
                        key = (label, strategy, whole, n)
                        if key in best and best[key] in (None, float("inf")):
                            continue  # it failed or timed out once: do not wait again
                        wall = run_point(python, n, strategy, boot, whole, args.timeout)
                        old = best.get(key, float("inf"))
                        best[key] = wall if wall is None or old is None or wall < old else old
    print(f"{'checkout':>8} {'strategy':>8} {'add':>6} {'blocks':>7} {'wall s':>9} {'us/block':>9} {'vs first':>9}")
    for label in pythons:
        for strategy in strategies:
            for whole in modes:
                base = best.get((label, strategy, whole, counts[0]))
                for n in counts:
                    wall = best.get((label, strategy, whole, n))
                    mode = "range" if whole else "each"
                    if wall is None or wall == float("inf"):
                        why = "failed" if wall is None else f">{args.timeout:.0f}s"
                        print(f"{label:>8} {strategy:>8} {mode:>6} {n:>7} {why:>9}")
                        continue
                    ok = base is not None and base != float("inf")
                    ratio = f"{wall / n / (base / counts[0]):9.2f}" if ok else f"{'-':>9}"
                    print(f"{label:>8} {strategy:>8} {mode:>6} {n:>7} {wall:9.3f} {wall / n * 1e6:9.1f} {ratio}")


if __name__ == "__main__":
    main()

"""Does adding memory one block at a time, as balloon drivers do, cost the same per block at any size?

    .venv/bin/python benchmarks/profile_linear_growth.py [--blocks 512,8192] [--strategies kmalloc,altmap]
    .venv/bin/python benchmarks/profile_linear_growth.py --blocks 512,8192,131072 --boot 2G --whole
    .venv/bin/python benchmarks/profile_linear_growth.py --blocks 8192 --strategies kmalloc --cprofile 20
    .venv/bin/python benchmarks/profile_linear_growth.py --other /path/to/other/.venv/bin/python

A driver (hv_balloon, virtio-mem, the Xen balloon) finds a free range above boot memory (allocate_resource(),
balloonsim.drivers.base.Driver.find_free_range), calls add_memory() for one 128 MiB block, and onlines it; then
the next. Each (strategy, blocks) point does that N times in a fresh guest, in a fresh process (after a warm-up
of a few blocks in another guest, so that first-call costs are not counted), and reports the wall time per block.
Two ratios say whether the cost grows with N:
- *vs first*: the per-block cost at N over that at the smallest N (each the best of `--repeats` rounds);
- *tail/head*: within one run, the time of the last `HEAD` adds over that of the first `HEAD` (best of the
  rounds): the same process and nearly the same moment, so less exposed to a shared host's load.
`--whole` also times one add_memory() of the whole range (then each block onlined), the `balloonsim hotplug` path.

The guest boots with what the kmalloc memmap of the largest range needs (1/64 of it from online memory, as
balloonsim.bench.scale.scale_boot gives it), the same boot for every N so that only N changes; with `--boot 2G`
kmalloc's memmap lands in the blocks added before. `--other PYTHON` runs the same points with another checkout's
interpreter, alternating point by point, so that load on a shared host hits both alike; both print side by side.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import math
import pstats
import subprocess
import sys
import time
from types import SimpleNamespace

from balloonsim.units import GiB, MiB, align_up, parse_size

BLOCK = 128 * MiB
LOWMEM_LIMIT = 3 * GiB
HEAD = 512  # blocks timed at the start and at the end of a one-at-a-time run
FAILED = {"wall_s": None}  # a call failed: -ENOMEM when the boot memory cannot hold the memmap


def boot_for(blocks: int, strategy: str) -> int:
    """Boot memory for `blocks` hot-added blocks (balloonsim.bench.scale.scale_boot's rule)."""
    size = blocks * BLOCK
    if strategy != "kmalloc":
        return 2 * GiB
    return align_up(size // 64 + size // 512 + 2 * GiB, GiB)


def add_blocks(blocks: int, strategy: str, boot: int, whole: bool = False) -> dict:
    """Add and online `blocks` blocks (one add_memory() each, or one for all with `whole`): wall seconds, and for
    one at a time those of the first and the last HEAD blocks."""
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
    head = min(HEAD, blocks)
    marks: list[float] = []
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()  # as run_hotplug does: the cyclic collector would rescan the growing heap
    try:
        started = time.perf_counter()
        if whole:
            s, e = first >> PAGE_SHIFT, (first + blocks * BLOCK) >> PAGE_SHIFT
            guest.backing.populate(s, e)
            if guest.add_memory(0, first, blocks * BLOCK, hint=Extents.span(s, e)):
                return FAILED
            for bid in sorted(guest.blocks):
                if guest.online_memory_block(bid, "online"):
                    return FAILED
        else:
            for i in range(blocks):
                if i in (head, blocks - head):
                    marks.append(time.perf_counter())
                start = Driver.find_free_range(driver, BLOCK, BLOCK)  # type: ignore[arg-type]
                if start is None:
                    return FAILED
                s, e = start >> PAGE_SHIFT, (start + BLOCK) >> PAGE_SHIFT
                guest.backing.populate(s, e)
                if guest.add_memory(0, start, BLOCK, hint=Extents.span(s, e)):
                    return FAILED
                if guest.online_memory_block(s // guest.block_pages, "online"):
                    return FAILED
        ended = time.perf_counter()
    finally:
        if enabled:
            gc.enable()
    out = {"wall_s": ended - started}
    if not whole:
        head_end = marks[0] if blocks > head else ended
        tail_start = marks[-1] if blocks > head else started
        out |= {"head_s": head_end - started, "tail_s": ended - tail_start}
    return out


def child(args: argparse.Namespace) -> None:
    blocks, strategy, boot, whole = args.child
    add_blocks(8, strategy, int(boot), whole == "whole")  # warm-up: first calls, lazy imports
    print(json.dumps(add_blocks(int(blocks), strategy, int(boot), whole == "whole")))


def run_point(python: str, blocks: int, strategy: str, boot: int, whole: bool, timeout: float) -> dict:
    cmd = [python, __file__, "--child", str(blocks), strategy, str(boot), "whole" if whole else "each"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=timeout).stdout
    except subprocess.TimeoutExpired:
        return {"wall_s": math.inf}
    return json.loads(out.strip().splitlines()[-1])


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
        boot = parse_size(args.boot) if args.boot else boot_for(blocks, strategy)
        add_blocks(8, strategy, boot, args.whole)
        prof = cProfile.Profile()
        prof.runcall(add_blocks, blocks, strategy, boot, args.whole)
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.cprofile)
        return
    pythons = {"this": sys.executable} | ({"other": args.other} if args.other else {})
    modes = [False, True] if args.whole else [False]
    best: dict[tuple, dict] = {}  # per point: the best of each figure ("wall_s" None: a call failed)
    for _ in range(args.repeats):
        for strategy in strategies:
            boot = parse_size(args.boot) if args.boot else boot_for(max(counts), strategy)
            for whole in modes:
                for n in counts:
                    for label, python in pythons.items():  # alternating, so load hits both alike
                        key = (label, strategy, whole, n)
                        old = best.get(key)
                        if old is not None and old["wall_s"] in (None, math.inf):
                            continue  # it failed or timed out once: do not wait again
                        new = run_point(python, n, strategy, boot, whole, args.timeout)
                        if old is None or new["wall_s"] in (None, math.inf):
                            best[key] = new
                        else:
                            best[key] = {k: min(v, new[k]) for k, v in old.items()}
    print(
        f"{'checkout':>8} {'strategy':>8} {'add':>6} {'blocks':>7} {'wall s':>9} {'us/block':>9} {'vs first':>9}"
        f" {'tail/head':>9}"
    )
    for label in pythons:
        for strategy in strategies:
            for whole in modes:
                base = best[(label, strategy, whole, counts[0])]["wall_s"]
                for n in counts:
                    point = best[(label, strategy, whole, n)]
                    wall = point["wall_s"]
                    mode = "range" if whole else "each"
                    if wall is None or wall == math.inf:
                        why = "failed" if wall is None else f">{args.timeout:.0f}s"
                        print(f"{label:>8} {strategy:>8} {mode:>6} {n:>7} {why:>9}")
                        continue
                    ratio = f"{wall / n / (base / counts[0]):9.2f}" if base not in (None, math.inf) else f"{'-':>9}"
                    tail = f"{point['tail_s'] / point['head_s']:9.2f}" if "tail_s" in point else f"{'-':>9}"
                    print(f"{label:>8} {strategy:>8} {mode:>6} {n:>7} {wall:9.3f} {wall / n * 1e6:9.1f} {ratio} {tail}")


if __name__ == "__main__":
    main()

"""Why time per block grows with the hot-added size: the cyclic garbage collector, measured.

    .venv/bin/python benchmarks/profile_scale.py [--sizes 16G,256G,4T,16T] [--strategy altmap]

Each size runs in a fresh process twice: as `balloonsim bench` runs it (GC on; the full collections the hot-add
triggers are counted and timed with gc.callbacks), and with the GC disabled.  The difference per block is what the
collector costs; the marginal time per block with the GC off shows how flat the model itself is.  Also: how many
GC-tracked objects and traced bytes each block leaves behind (what the collector has to walk, and the RSS).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
import tracemalloc
from collections import Counter

from balloonsim.bench.scale import BLOCK, scale_point
from balloonsim.units import GiB, parse_size


def child(size: int, strategy: str, gc_on: bool) -> dict:
    stats = {"collections": 0, "gc_s": 0.0}
    started: list[float] = []
    explicit = [False]
    collect = gc.collect

    def collect_between_runs(*args):  # scale_point's own gc.collect() between runs is not the model's
        explicit[0] = True
        try:
            return collect(*args)
        finally:
            explicit[0] = False

    gc.collect = collect_between_runs

    def timer(phase: str, info: dict) -> None:
        if info["generation"] != 2 or explicit[0]:
            return
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            stats["collections"] += 1
            stats["gc_s"] += time.perf_counter() - started.pop()

    if gc_on:
        gc.callbacks.append(timer)
    else:
        gc.disable()
    p = scale_point(size, strategy)  # gen-2 collections come from the full-size runs (one-block runs make few objects)
    return {
        "marginal_us_per_block": p["marginal_us_per_block"],
        "wall_s": p["wall_s"],
        "repeats": p["repeats"],
        "gen2_per_run": stats["collections"] / p["repeats"],
        "gen2_s_per_run": stats["gc_s"] / p["repeats"],
        "gen2_us_per_block": stats["gc_s"] / p["repeats"] / p["blocks"] * 1e6,
        "peak_rss_mib": p["peak_rss_mib"],
    }


def per_block_objects(strategy: str, size: int = 64 * GiB) -> dict:
    """GC-tracked objects and traced bytes per block left by one hot-add + online, by type / source line."""
    from balloonsim.bench.scale import scale_spec
    from balloonsim.hotplug import run_hotplug

    spec = scale_spec(size, strategy)
    run_hotplug(scale_spec(BLOCK, strategy))  # warm-up
    # run_hotplug drops its guest; the same steps here keep it, to count what it holds
    from balloonsim.kernel import Guest, GuestConfig
    from balloonsim.kernel.extents import Extents
    from balloonsim.memmap import get_strategy
    from balloonsim.units import PAGE_SHIFT

    cfg = GuestConfig(boot=list(spec.boot), max_addr=max(64 * GiB, spec.at + size), block_size=BLOCK)
    guest = Guest(cfg, get_strategy(strategy, {}, key=""))
    gc.collect()
    before = Counter(type(o).__name__ for o in gc.get_objects())
    tracemalloc.start(1)
    snap0 = tracemalloc.take_snapshot()
    s, e = spec.at >> PAGE_SHIFT, (spec.at + size) >> PAGE_SHIFT
    guest.backing.populate(s, e)
    assert guest.add_memory(0, spec.at, size, hint=Extents.span(s, e)) == 0
    for bid in sorted(guest.blocks):
        guest.online_memory_block(bid, "online")
    gc.collect()
    snap1 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    after = Counter(type(o).__name__ for o in gc.get_objects())
    n = size // BLOCK
    diff = {k: (after[k] - before[k]) / n for k in after if (after[k] - before[k]) / n >= 0.5}
    lines = snap1.compare_to(snap0, "lineno")
    return {
        "blocks": n,
        "tracked_per_block": sum((after - before).values()) / n,
        "by_type": diff,
        "bytes_per_block": sum(st.size_diff for st in lines) / n,
        "top_lines": [(str(st.traceback[0]), st.size_diff / n) for st in lines[:8]],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="16G,256G,4T,16T")
    ap.add_argument("--strategy", default="altmap")
    ap.add_argument("--child", nargs=3, metavar=("SIZE", "STRATEGY", "GC"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        size, strategy, gc_on = args.child
        print(json.dumps(child(int(size), strategy, gc_on == "on")))
        return
    print(
        f"{'size':>6} {'GC on us/block':>15} {'GC off us/block':>16} {'gen-2 GCs/run':>14} "
        f"{'gen-2 us/block':>15} {'peak RSS MiB':>13}"
    )
    for text in args.sizes.split(","):
        size = parse_size(text)
        res = {}
        for mode in ("on", "off"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(size), args.strategy, mode],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            res[mode] = json.loads(out.strip().splitlines()[-1])
        on, off = res["on"], res["off"]
        print(
            f"{text:>6} {on['marginal_us_per_block']:15.1f} {off['marginal_us_per_block']:16.1f} "
            f"{on['gen2_per_run']:14.1f} {on['gen2_us_per_block']:15.1f} {on['peak_rss_mib']:13.0f}"
        )
    obj = per_block_objects(args.strategy)
    print(
        f"\nper block left behind ({args.strategy}, {obj['blocks']} blocks): {obj['tracked_per_block']:.1f} "
        f"GC-tracked objects, {obj['bytes_per_block']:.0f} traced bytes"
    )
    print("  by type: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(obj["by_type"].items(), key=lambda kv: -kv[1])))
    for where, nbytes in obj["top_lines"]:
        print(f"  {nbytes:7.0f} B/block  {where}")


if __name__ == "__main__":
    main()

"""Simulated seconds per wall second of a whole `balloonsim.simulate()` against bare SimPy's events per second.

    .venv/bin/python benchmarks/simulate_ratio.py [--repeats 15] [--seed 0]

The figure users feel is how fast a whole run goes, construction and result included. The two measurements
alternate repeat by repeat in one process and each keeps its best, so a noisy host slows both alike and the ratio
holds. The reference scenario is balloonsim.bench.event_rate's (Hyper-V, kmalloc, bursts, udev, 1 h).
"""

from __future__ import annotations

import argparse
import time

import balloonsim
from balloonsim.bench.event_rate import REFERENCE_SCENARIO, bare_simpy
from balloonsim.scenario import load_scenario


def simulate_wall(seed: int) -> tuple[float, float, int]:
    """Wall seconds of one whole simulate() (scenario from a dict, as callers pass it), simulated seconds,
    SimPy events."""
    t = time.perf_counter()
    result = balloonsim.simulate(REFERENCE_SCENARIO, seed=seed)
    wall = time.perf_counter() - t
    return wall, result.metrics["sim_time_s"], result.metrics["simpy_events"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bare", type=int, default=100_000, help="timeouts per bare SimPy repeat")
    args = ap.parse_args()
    load_scenario(REFERENCE_SCENARIO)  # warm-up: imports, plugin lookups
    simulate_wall(args.seed)
    bare = 0.0
    walls = []
    for _ in range(args.repeats):
        bare = max(bare, bare_simpy(args.bare)["events_per_s"])
        wall, sim_s, events = simulate_wall(args.seed)
        walls.append(wall)
    best = min(walls)
    rate = sim_s / best
    print(f"bare SimPy: {bare:,.0f} timeout events/s (best of {args.repeats})")
    print(
        f"simulate(reference, seed {args.seed}): best {best * 1e3:.2f} ms, median "
        f"{sorted(walls)[len(walls) // 2] * 1e3:.2f} ms, {events:,} SimPy events, "
        f"{rate:,.0f} simulated s per wall s"
    )
    print(f"ratio: {rate / bare:.3f}")


if __name__ == "__main__":
    main()

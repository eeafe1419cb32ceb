"""SimPy's event rate alone, and the reference scenario's against it.

`bare`: one process yielding `env.timeout(1)` N times, the most events per second SimPy gives on this host.
`reference`: the reference scenario (Hyper-V, kmalloc, bursts, udev, 1 h, 64 GiB), events per second of
`Sim.run` with construction timed apart. The two alternate repeat by repeat and each keeps its best, so a noisy
host hits both alike and their ratio holds. The simulator is imported with this module, not inside a timed call
(a spinning child process of `sweeps` starts its clock after its imports).
"""

from __future__ import annotations

import time
from typing import Any

import simpy

from balloonsim.bench.machine import best_run
from balloonsim.bench.plan import Plan
from balloonsim.scenario import load_scenario
from balloonsim.sim.world import Sim, _scheduled_events

REFERENCE_SCENARIO: dict[str, Any] = {
    "duration": "1h",
    "guest": {"boot": "4G", "max_addr": "64G"},
    "driver": {"name": "hyperv"},
    "memmap": {"strategy": "kmalloc"},
    "onlining": {"agent": "udev"},
    "workload": {"name": "bursts"},
    "host": {"controller": "hyperv-buffer"},
}
REFERENCE_SEED = 0


def bare_simpy(n: int) -> dict[str, Any]:
    """One process yielding env.timeout(1) n times: SimPy events per second of env.run()."""
    env = simpy.Environment()

    def ticker(env: simpy.Environment):
        for _ in range(n):
            yield env.timeout(1)

    env.process(ticker(env))
    started = time.perf_counter()
    env.run()
    wall = time.perf_counter() - started
    events = _scheduled_events(env)
    return {"timeouts": n, "events": events, "wall_s": wall, "events_per_s": events / wall}


def reference_run(scenario: dict[str, Any] | None = None, seed: int = REFERENCE_SEED) -> dict[str, Any]:
    """One run of the reference scenario: events per second of Sim.run (construction timed apart)."""
    sc = load_scenario(scenario if scenario is not None else REFERENCE_SCENARIO)
    started = time.perf_counter()
    sim = Sim(sc, seed)
    built = time.perf_counter()
    sim.run()
    wall = time.perf_counter() - built
    events = _scheduled_events(sim.env)
    sim_s = sim.crash_time if sim.crash_time is not None else sc.duration
    return {
        "simpy_events": events,
        "construct_s": built - started,
        "wall_s": wall,
        "events_per_s": events / wall,
        "sim_s": sim_s,
        "sim_s_per_wall_s": sim_s / wall,
        "crashed": sim.crash is not None,
        "blocks_added": len(sim.guest.blocks),
    }


def bare_and_reference(plan: Plan, sections: set[str]) -> dict[str, Any]:
    """Alternate bare and reference repeats (so load hits both alike); keep each one's best."""
    bare: list[dict[str, Any]] = []
    ref: list[dict[str, Any]] = []
    if "reference" in sections:
        reference_run()  # warm-up: imports, plugin lookups, first-call caches
    for _ in range(plan.repeats):
        if "bare" in sections:
            bare.append(bare_simpy(plan.bare_timeouts))
        if "reference" in sections:
            ref.append(reference_run())
    out: dict[str, Any] = {}
    if bare:
        out["bare"] = {
            **best_run(bare, "wall_s"),
            "repeats": len(bare),
            "all_events_per_s": [round(r["events_per_s"]) for r in bare],
        }
    if ref:
        best = best_run(ref, "wall_s")
        out["reference"] = {
            **best,
            "repeats": len(ref),
            "scenario": REFERENCE_SCENARIO,
            "seed": REFERENCE_SEED,
            "all_events_per_s": [round(r["events_per_s"]) for r in ref],
        }
        if bare:
            out["reference"]["ratio_to_bare"] = best["events_per_s"] / out["bare"]["events_per_s"]
    return out

"""Where the reference scenario's time goes: SimPy's dispatch against each model process's own code.

    .venv/bin/python benchmarks/profile_reference.py [--runs 50] [--cprofile 25]

Every process the Sim starts is wrapped in a generator that times each resume of the model's code, and every
check the Clock runs (balloonsim.sim.clock.Poll) is timed, so a run's wall time splits into: the model's code per
process and per check (measured), and the rest (the run loop: SimPy's scheduling and heap, resuming generators,
callbacks, placing checks, the recorder's samples).  The wrapper's own cost is measured on bare SimPy and taken out.
With --cprofile N, the N functions with the most own time inside Sim.run follow (cProfile inflates functions
that are called often and do little; read its shares next to the wrapper's).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Any

import simpy

from balloonsim.bench.event_rate import REFERENCE_SCENARIO, REFERENCE_SEED, bare_simpy
from balloonsim.bench.goals import GOAL_SIM_SECONDS_RATIO
from balloonsim.scenario import load_scenario
from balloonsim.sim.clock import Poll
from balloonsim.sim.world import Sim, _scheduled_events


def _timed(gen, acc: list[float]):
    """Yield what `gen` yields; add the time spent inside `gen` to acc[0] and count resumes in acc[1]."""
    value: Any = None
    exc: BaseException | None = None
    clock = time.perf_counter
    while True:
        t = clock()
        try:
            event = gen.throw(exc) if exc is not None else gen.send(value)
        except StopIteration as stop:
            acc[0] += clock() - t
            acc[1] += 1
            return stop.value
        acc[0] += clock() - t
        acc[1] += 1
        exc = None
        try:
            value = yield event
        except BaseException as e:  # noqa: BLE001 - interrupts and failed events go on into the model
            exc = e


# Methods timed inclusively with --functions: (path from the Sim to the object, method name).
FUNCTIONS = [
    ("workload", "step"),
    ("workload", "demand"),
    ("memory", "allocate"),
    ("memory", "exit"),
    ("memory", "read_files"),
    ("memory", "account"),
    ("guest.alloc", "kswapd"),
    ("guest.alloc", "alloc"),
    ("guest.alloc", "total"),
    ("recorder", "_row"),
    ("", "set_target"),
    ("driver", "committed_bytes"),
]


_WRAPPED_CALLS = [0]  # timed calls so far: a timed call's nested timed calls cost it their wrappers


def _wrap_methods(sim: Sim, acc: dict[str, list[float]]) -> None:
    """acc[name] = [seconds, calls, timed calls nested inside] per wrapped method."""
    clock = time.perf_counter
    for path, name in FUNCTIONS:
        obj = sim
        for part in filter(None, path.split(".")):
            obj = getattr(obj, part)
        fn = getattr(obj, name)
        cell = acc[f"{type(obj).__name__}.{name}"]

        def timed(*args, _fn=fn, _cell=cell, **kwargs):
            _WRAPPED_CALLS[0] += 1
            n0 = _WRAPPED_CALLS[0]
            t = clock()
            try:
                return _fn(*args, **kwargs)
            finally:
                _cell[0] += clock() - t
                _cell[1] += 1
                _cell[2] += _WRAPPED_CALLS[0] - n0

        setattr(obj, name, timed)


def _instrument(env: simpy.Environment, acc: dict[str, list[float]]) -> None:
    original = env.process

    def process(generator):
        name = getattr(generator, "__qualname__", type(generator).__name__)
        return original(_timed(generator, acc[name]))

    env.process = process  # type: ignore[method-assign]


@contextmanager
def _timed_checks(acc: dict[str, list[float]]):
    """Time the Clock's checks (the workload's tick, the host's report, MOM), which are not SimPy processes."""
    original = Poll.run
    clock = time.perf_counter

    def run(self, k, key=None):
        cell = acc[f"check {self.check.__qualname__}"]
        t = clock()
        try:
            return original(self, k, key)
        finally:
            cell[0] += clock() - t
            cell[1] += 1

    Poll.run = run  # type: ignore[method-assign]
    try:
        yield
    finally:
        Poll.run = original  # type: ignore[method-assign]


def wrapper_cost(n: int = 100_000) -> float:
    """Seconds per resume that the timing wrapper adds (bare SimPy with and without it)."""
    plain = min(bare_simpy(n)["wall_s"] for _ in range(3))
    best = float("inf")
    for _ in range(3):
        env = simpy.Environment()
        acc = [0.0, 0]

        def ticker(env):
            for _ in range(n):
                yield env.timeout(1)

        env.process(_timed(ticker(env), acc))
        t = time.perf_counter()
        env.run()
        best = min(best, time.perf_counter() - t)
    return max(0.0, (best - plain) / n)


def call_wrapper_cost(n: int = 200_000) -> float:
    """Seconds per call that the method wrapper of _wrap_methods adds."""
    clock = time.perf_counter

    class Box:
        def f(self, x):
            return x

    box = Box()
    plain = box.f
    cell = [0.0, 0]

    def timed(*args, _fn=plain, _cell=cell, **kwargs):
        t = clock()
        try:
            return _fn(*args, **kwargs)
        finally:
            _cell[0] += clock() - t
            _cell[1] += 1

    def loop(fn) -> float:
        t = clock()
        for i in range(n):
            fn(i)
        return clock() - t

    return max(0.0, (min(loop(timed) for _ in range(3)) - min(loop(plain) for _ in range(3))) / n)


def breakdown(runs: int) -> dict[str, Any]:
    sc = load_scenario(REFERENCE_SCENARIO)
    Sim(sc, REFERENCE_SEED).run()  # warm-up
    plain = []
    for _ in range(runs):
        sim = Sim(sc, REFERENCE_SEED)
        t = time.perf_counter()
        sim.run()
        plain.append(time.perf_counter() - t)
    events = _scheduled_events(sim.env)
    acc: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    walls = []
    with _timed_checks(acc):
        for _ in range(runs):
            sim = Sim(sc, REFERENCE_SEED)
            _instrument(sim.env, acc)
            t = time.perf_counter()
            sim.run()
            walls.append(time.perf_counter() - t)
    per_resume = wrapper_cost()
    bare = max(bare_simpy(200_000)["events_per_s"] for _ in range(3))
    procs = {
        name: {"ms_per_run": (a[0] / runs) * 1e3, "resumes_per_run": a[1] / runs, "us_per_resume": a[0] / a[1] * 1e6}
        for name, a in acc.items()
    }
    model = sum(a[0] for a in acc.values()) / runs
    instrumented = sum(walls) / runs
    resumes = sum(a[1] for a in acc.values()) / runs
    simpy_ms = (instrumented - model - resumes * per_resume) * 1e3
    return {
        "events": events,
        "plain_ms": min(plain) * 1e3,
        "plain_mean_ms": sum(plain) / runs * 1e3,
        "instrumented_ms": instrumented * 1e3,
        "model_ms": model * 1e3,
        "simpy_ms": simpy_ms,
        "wrapper_us": per_resume * 1e6,
        "bare_events_per_s": bare,
        "bare_ms_for_these_events": events / bare * 1e3,
        "processes": procs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--cprofile", type=int, default=0, metavar="N", help="also print cProfile's top N")
    ap.add_argument("--functions", action="store_true", help="also time FUNCTIONS (inclusive, per call)")
    args = ap.parse_args()
    b = breakdown(args.runs)
    # simulated s per wall s >= GOAL x bare SimPy events/s, for the reference's hour
    goal_ms = 3600 / (GOAL_SIM_SECONDS_RATIO * b["bare_events_per_s"]) * 1e3
    print(
        f"reference scenario: {b['events']:,} SimPy events per run; Sim.run best {b['plain_ms']:.2f} ms, "
        f"mean {b['plain_mean_ms']:.2f} ms ({b['events'] / b['plain_ms'] * 1e3:,.0f} events/s)"
    )
    print(
        f"bare SimPy: {b['bare_events_per_s']:,.0f} events/s -> these events alone "
        f"{b['bare_ms_for_these_events']:.2f} ms; the {GOAL_SIM_SECONDS_RATIO} goal allows {goal_ms:.2f} ms per run"
    )
    print(
        f"instrumented mean {b['instrumented_ms']:.2f} ms = model code {b['model_ms']:.2f} ms + SimPy and callbacks "
        f"{b['simpy_ms']:.2f} ms (+ wrapper {b['wrapper_us']:.2f} us x resumes, taken out)"
    )
    print()
    print(f"{'process':40} {'resumes/run':>12} {'ms/run':>8} {'us/resume':>10} {'share of run':>13}")
    total = b["model_ms"] + b["simpy_ms"]
    for name, p in sorted(b["processes"].items(), key=lambda kv: -kv[1]["ms_per_run"]):
        print(
            f"{name:40} {p['resumes_per_run']:12.0f} {p['ms_per_run']:8.2f} {p['us_per_resume']:10.2f} "
            f"{p['ms_per_run'] / total:13.1%}"
        )
    print(f"{'SimPy event loop (the rest)':40} {'':12} {b['simpy_ms']:8.2f} {'':10} {b['simpy_ms'] / total:13.1%}")
    if args.functions:
        sc = load_scenario(REFERENCE_SCENARIO)
        acc = defaultdict(lambda: [0.0, 0, 0])
        for _ in range(args.runs):
            sim = Sim(sc, REFERENCE_SEED)
            _wrap_methods(sim, acc)
            sim.run()
        wrap = call_wrapper_cost()
        print()
        print(
            f"functions, inclusive (callees included), wrapper cost {wrap * 1e6:.2f} us per timed call taken out "
            "(its own and its timed callees')"
        )
        print(f"{'function':40} {'calls/run':>12} {'ms/run':>8} {'us/call':>10} {'share of run':>13}")
        for name, (secs, calls, nested) in sorted(acc.items(), key=lambda kv: kv[1][2] * wrap - kv[1][0]):
            if not calls:  # not called in this scenario (e.g. the accounting of memory stalls)
                print(f"{name:40} {0:12.0f}")
                continue
            own = max(0.0, secs - (calls + nested) * wrap) / args.runs
            print(
                f"{name:40} {calls / args.runs:12.0f} {own * 1e3:8.2f} {own / calls * args.runs * 1e6:10.2f} "
                f"{own * 1e3 / b['plain_mean_ms']:13.1%}"
            )
    if args.cprofile:
        sc = load_scenario(REFERENCE_SCENARIO)
        prof = cProfile.Profile()
        for _ in range(args.runs):
            sim = Sim(sc, REFERENCE_SEED)
            prof.enable()
            sim.run()
            prof.disable()
        print()
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.cprofile)


if __name__ == "__main__":
    main()

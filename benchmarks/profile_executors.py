"""Fixed and per-run costs of the three executors, apart from the simulation itself.

    .venv/bin/python benchmarks/profile_executors.py [--tasks 200] [--jobs 2]

For `--jobs 1` (in-process), `--jobs N` (spawned local processes) and `--dask local`: the time to create the
executor, the first round trip (for the process pool, spawning and importing the workers), the wall time per
trivial task when the runner keeps `executor.slots` in flight (the dispatch overhead a run pays on top of its
own work), the runner's CPU per task (for Dask the scheduler and client threads included: on two cores that CPU
is taken from the workers), the time to close, and how long a fresh worker takes to import what a run needs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from balloonsim.experiment.executors import make_executor


def _noop(x: int) -> int:
    return x


def measure(jobs: int, dask: str | None, tasks: int) -> dict[str, float]:
    t0 = time.perf_counter()
    ex = make_executor(jobs, dask)
    t1 = time.perf_counter()
    first = [ex.submit(_noop, i) for i in range(ex.workers)]
    pending = set(first)
    while pending:
        pending -= ex.wait(pending, None)
    t2 = time.perf_counter()
    todo = iter(range(tasks))
    in_flight: set = set()
    done = 0
    cpu = time.process_time()
    while done < tasks:
        for i in todo:
            in_flight.add(ex.submit(_noop, i))
            if len(in_flight) >= ex.slots:
                break
        for f in ex.wait(in_flight, None):
            ex.result(f)
            in_flight.discard(f)
            done += 1
    t3 = time.perf_counter()
    cpu = time.process_time() - cpu
    ex.close()
    t4 = time.perf_counter()
    return {
        "create_s": t1 - t0,
        "first_round_trip_s": t2 - t1,
        "ms_per_task": (t3 - t2) / tasks * 1e3,
        "close_s": t4 - t3,
        "fixed_s": (t1 - t0) + (t2 - t1) + (t4 - t3),
        "runner_cpu_ms_per_task": cpu / tasks * 1e3,
    }


def worker_import_s() -> float:
    """A fresh interpreter importing what execute_run and the reference simulation need."""
    code = (
        "import time; t = time.perf_counter(); from balloonsim.experiment.worker import execute_run; "
        "from balloonsim import simulate; print(time.perf_counter() - t)"
    )
    runs = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip())
        for _ in range(3)
    ]
    return min(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    print(f"worker import (fresh interpreter, best of 3): {worker_import_s():.2f} s")
    print(
        f"{'executor':14} {'create s':>9} {'1st trip s':>11} {'close s':>8} {'fixed s':>8} {'ms/task':>8} "
        f"{'runner CPU ms/task':>19}"
    )
    for label, jobs, dask in (
        ("jobs 1", 1, None),
        (f"jobs {args.jobs}", args.jobs, None),
        ("dask local", args.jobs, "local"),
    ):
        m = measure(jobs, dask, args.tasks)
        print(
            f"{label:14} {m['create_s']:9.2f} {m['first_round_trip_s']:11.2f} {m['close_s']:8.2f} "
            f"{m['fixed_s']:8.2f} {m['ms_per_task']:8.2f} {m['runner_cpu_ms_per_task']:19.2f}"
        )


if __name__ == "__main__":
    main()

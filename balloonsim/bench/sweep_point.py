"""One sweep timed as users run it: `balloonsim run`'s work in a fresh interpreter, its imports included.

This module imports nothing of the simulator or the runner before the clock starts (the parent's task dispatch,
balloonsim.bench.__main__, imports only this): a `--jobs 1` run imports them in the runner, a `--jobs 2` run in
the runner and, beside it, in the workers' forkserver, and both are part of the wall time a user waits.
"""

from __future__ import annotations

import csv
import resource
import time
from pathlib import Path
from typing import Any

from balloonsim.bench.machine import CpuWatch, children_peak_rss_mib, peak_rss_mib


def sweep_point(
    experiment: str | Path,
    jobs: int,
    dask: str | None,
    replications: int,
    out_dir: str | Path,
    report: bool = False,
) -> dict[str, Any]:
    """In this process, from a cold start: run the experiment as `balloonsim run X --jobs N [--dask local]
    --no-report -q --set replications=R --out DIR` does; wall time (the runner's imports, the workers' start and
    stop included), runs/s, CPU, peak RSS. `report`: then the analysis, as `balloonsim run` without --no-report
    does it (analyze, plots, report), timed on its own after every other figure is taken."""
    me0 = resource.getrusage(resource.RUSAGE_SELF)
    watch = CpuWatch()
    started = time.perf_counter()
    from balloonsim.experiment.forkserver import start_early

    start_early(jobs, dask)  # what `balloonsim run` does first thing
    from balloonsim.experiment import run_experiment  # the runner's libraries: part of what users wait for

    summary = run_experiment(
        experiment, out_dir=out_dir, jobs=jobs, dask=dask, overrides=[f"replications={replications}"], quiet=True
    )
    wall = time.perf_counter() - started
    run_s = 0.0
    try:
        with open(Path(out_dir) / "timing.csv", newline="") as fh:
            run_s = sum(float(row["wall_time_s"]) for row in csv.DictReader(fh))
    except (OSError, KeyError, ValueError):
        pass
    workers = 1 if jobs == 1 and not dask else jobs
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    # workers forked from a forkserver (or Dask's) are not this process's children: they report their own CPU,
    # and what rusage did not see of it is ours, not other processes'
    kids_cpu = kids.ru_utime + kids.ru_stime
    workers_cpu = summary.workers_cpu_s if summary.workers_cpu_s is not None else kids_cpu
    host = watch.result()
    others = host.get("others_cores")
    if others is not None and host["wall_s"] > 0:
        others = max(0.0, others - max(0.0, workers_cpu - kids_cpu) / host["wall_s"])
    point = {
        "mode": f"dask {dask}" if dask else f"jobs {jobs}",
        "executor": summary.executor,
        "replications": replications,
        "runs": summary.ran,
        "ok": summary.ok,
        "failed": summary.failed,
        "wall_s": wall,
        "batch_s": summary.wall_time_s,
        "runs_per_s": summary.ran / wall,
        "run_s": run_s,  # the runs' own wall times (timing.csv), summed
        "worker_busy": run_s / (workers * wall),  # share of the workers' wall time spent inside runs
        "runner_cpu_s": me.ru_utime + me.ru_stime - me0.ru_utime - me0.ru_stime,
        "workers_cpu_s": workers_cpu,
        "others_cores": others,  # other processes on the machine meanwhile
        "runner_peak_rss_mib": peak_rss_mib(),
        "largest_child_peak_rss_mib": children_peak_rss_mib(),
    }
    if report:
        point["analysis_s"] = analysis_wall(out_dir)
        point["analysis_over_batch"] = point["analysis_s"] / summary.wall_time_s
    return point


def analysis_wall(out_dir: str | Path) -> float:
    """Wall time of the analysis `balloonsim run` does after its batch (the analysis' imports included: the runner
    has not loaded pandas, scipy or matplotlib)."""
    started = time.perf_counter()
    from balloonsim.analysis.pipeline import finish, quiet

    finish(out_dir, progress=quiet)
    return time.perf_counter() - started

"""Local worker processes: forked from a forkserver that imported the simulator once, and ended with the runner.

Used by `--jobs N` (a process pool) and `--dask local` (Dask workers in processes of their own).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence

from balloonsim.experiment.lifetime import die_with_runner
from balloonsim.experiment.worker import preload


def start_worker(runner_pid: int, modules: tuple[str, ...]) -> None:
    """A local worker's initializer: die with the runner, then import what the runs need (already there when
    the worker was forked from a preloaded forkserver)."""
    die_with_runner(runner_pid)
    preload(modules)


def start_forkserver(modules: Sequence[str]) -> None:
    """Start the forkserver now, importing `modules` (if none is running yet), without waiting for it."""
    context = worker_context(tuple(modules))
    if context.get_start_method() == "forkserver":
        import multiprocessing.forkserver

        multiprocessing.forkserver.ensure_running()


def worker_context(modules: tuple[str, ...] = ()) -> multiprocessing.context.BaseContext:
    """Workers forked from a forkserver that has imported `modules` once (where there is one, i.e. Linux),
    else spawned.

    A spawned worker is a fresh interpreter that imports the simulator itself: about 0.3 s of CPU each, which
    on two cores comes out of the runs. The forkserver (a child of the runner, started when the first worker
    is) imports it once and forks each worker ready to run, in milliseconds; it forks from a process that has
    only imported modules, never from the runner with its threads and open files. The workers are then the
    forkserver's children, so the runner's rusage does not see their CPU: each chunk reports its worker's
    (ChunkResult.process_cpu_s), and each worker watches the runner itself (`die_with_runner`). The preload is
    fixed when the forkserver starts (once per runner process)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["balloonsim.experiment.forkserver", *modules])
    return context

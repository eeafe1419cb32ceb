"""Local worker processes: forked from a forkserver that imported the simulator once, and ended with the runner.

Used by `--jobs N` (a process pool) and `--dask local` (Dask workers in processes of their own). This module
stays light (the standard library only): `balloonsim run` imports it first thing to start the forkserver, whose
imports then run beside the runner's own.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
from collections.abc import Sequence

from balloonsim import environ
from balloonsim.collector import set_aside_for_good
from balloonsim.experiment.lifetime import die_with_runner

# What a worker imports before its first run when it runs the real simulator (so that the first run's time,
# which sizes the chunks, is a run's and not the imports'): the simulator, what a chunk arrives and leaves as
# (the worker module, `RunSpec`), and balloonsim's plugins (`worker_plugins`). Imported once by the forkserver,
# beside the runner's own start-up, rather than by every worker at once at the start of the batch.
SIMULATOR_MODULES = (
    "balloonsim.sim.simulation",
    "balloonsim.experiment.worker",
    "balloonsim.experiment.design",
    "balloonsim.experiment.worker_plugins",
)
# ... and what a `--dask local` worker imports besides
DASK_WORKER_MODULES = ("distributed", "balloonsim.experiment.dask_local")


def start_worker(runner_pid: int, modules: tuple[str, ...]) -> None:
    """A local worker's initializer: die with the runner, then import what the runs need (already there when
    the worker was forked from a preloaded forkserver), and set the imports aside from the garbage collector:
    its full collections walked them all, 0.2 s of the quickstart's 90 runs, for the runs' own SimPy cycles."""
    die_with_runner(runner_pid)
    preload(modules)
    set_aside_for_good()


def preload(modules: Sequence[str]) -> None:
    """Import `modules` now (a worker's start-up), so that its first run does not pay for them."""
    for name in modules:
        importlib.import_module(name)


def start_forkserver(modules: Sequence[str]) -> None:
    """Start the forkserver now, importing `modules` (if none is running yet), without waiting for it."""
    context = worker_context(tuple(modules))
    if context.get_start_method() == "forkserver":
        import multiprocessing.forkserver

        multiprocessing.forkserver.ensure_running()


def start_early(jobs: int | None, dask: str | None) -> None:
    """Start the forkserver of the workers a `balloonsim run --jobs/--dask` will have, before the runner imports
    its own libraries and loads the experiment (about 0.4 s of CPU): the forkserver's imports of the simulator
    (and Dask) then run on the other core meanwhile, and the workers are ready when the first runs are handed
    out instead of that much later. Nothing for `--jobs 1` or a remote scheduler, which have no local workers.
    The modules are those the executor asks for later (`balloonsim.experiment.executors`): a forkserver's
    preload is fixed once it runs. First, before either loads numpy or pyarrow: `environ.settle()`."""
    environ.settle()
    if dask == "local":
        start_forkserver((*DASK_WORKER_MODULES, *SIMULATOR_MODULES))
    elif not dask and (jobs or os.cpu_count() or 1) > 1:
        start_forkserver(SIMULATOR_MODULES)


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

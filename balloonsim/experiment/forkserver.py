"""Local worker processes: forked from a forkserver that imported the simulator once, and ended with the runner.

Used by `--jobs N` (a process pool) and `--dask local` (Dask workers in processes of their own).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import select
import signal
import threading
import time
from collections.abc import Sequence

from balloonsim.experiment.worker import preload

PR_SET_PDEATHSIG = 1


def die_with_runner(runner_pid: int) -> None:
    """End this worker as soon as the runner (`runner_pid`) ends, however it ends, so that killing only the
    runner leaves no worker behind.

    A worker forked from the forkserver is the forkserver's child, and the forkserver lives as long as any of
    its children holds its pipe, so neither the parent-death signal nor a closed queue would end it: a daemon
    thread waits on a pidfd of the runner (Linux 5.3; a once-a-second check elsewhere) and exits the process.
    The parent-death signal is armed as well, for a worker whose parent is the runner itself."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the thread below still ends the worker
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)
    try:
        pidfd = os.pidfd_open(runner_pid)
    except (OSError, AttributeError):
        pidfd = None
        if not _alive(runner_pid):
            os._exit(1)
    threading.Thread(
        target=_exit_when_gone, args=(runner_pid, pidfd), name="balloonsim-runner-watch", daemon=True
    ).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exit_when_gone(pid: int, pidfd: int | None) -> None:
    if pidfd is not None:
        select.select([pidfd], [], [])  # readable once the process has exited
    else:
        while _alive(pid):
            time.sleep(1.0)
    os._exit(1)


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

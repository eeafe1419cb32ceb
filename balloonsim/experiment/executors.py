"""Where runs execute: the main process (`--jobs 1`), local processes (`--jobs N`), or Dask (`--dask`).

All three offer the same small interface, so the runner has one code path: submit a chunk of runs, wait for
whichever finishes first (with a timeout, so it can flush on time), take its result.  `slots` says how many
chunks to keep in flight: enough to keep every worker busy, few enough that memory stays flat for designs of
any size.
"""

from __future__ import annotations

import concurrent.futures as cf
import gc
import os
import re
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from balloonsim.errors import UserError
from balloonsim.experiment.forkserver import DASK_WORKER_MODULES, start_forkserver, start_worker, worker_context

RECOUNT_S = 5.0  # how often the runner asks an existing Dask scheduler how many worker threads it has
HEALTH_CHECK_S = 1.0  # how often a runner waiting for results checks that its local Dask workers can start
_DASK_ADDRESS = re.compile(r"^([a-z]+://)?[^\s:/]+(:\d+)?$")


class Executor:
    """Runs functions somewhere and hands back futures."""

    description = ""
    workers = 1
    slots = 1  # chunks in flight: one running and one queued per worker
    chunked = True  # hand runs over in chunks (see chunks.py); False where a hand-over costs nothing
    elsewhere = True  # submit() returns at once while others run the work (so the runner may submit first)

    def start(self) -> None:
        """Begin starting the workers now, without waiting for them (their start-up overlaps the runner's)."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        raise NotImplementedError

    def wait(self, futures: Iterable[Any], timeout: float | None) -> set[Any]:
        """The futures among `futures` that are finished, waiting at most `timeout` s for at least one."""
        raise NotImplementedError

    def result(self, future: Any) -> Any:
        return future.result()

    def after_failure(self, future: Any, exc: BaseException) -> bool:
        """`future` failed outside the run function; True if its runs should be retried alone (`run_alone`)."""
        return False

    def run_alone(self, fn: Callable[..., Any], calls: list[tuple[Any, ...]]) -> Iterator[Any]:
        """`fn(*args)` for each args in turn, each where it can hurt no other: a result or the exception."""
        for args in calls:
            try:
                yield fn(*args)
            except Exception as exc:  # noqa: BLE001 - handed to the caller, like a future's exception
                yield exc

    def release(self) -> None:
        """Nothing more will be submitted: let the workers begin to exit while the runner finishes its files."""

    def close(self, cancel: bool = False) -> None:
        """Release the workers; `cancel` drops queued work instead of waiting for it."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        self.close(cancel=exc_type is not None)


class InProcess(Executor):
    """`--jobs 1`: each run executes in the main process when submitted (easy to debug and profile)."""

    description = "in-process (1 worker)"
    chunked = False  # nothing to save, and an interrupt keeps every run finished before it
    elsewhere = False  # submit() runs the work: commit what came back before running more

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        future: cf.Future = cf.Future()
        future.set_result(fn(*args))
        return future

    def wait(self, futures: Iterable[Any], timeout: float | None) -> set[Any]:
        return set(futures)


class LocalProcesses(Executor):
    """`--jobs N`: a pool of N worker processes (forked from a clean forkserver, so no state leaks from the
    runner)."""

    def __init__(self, jobs: int, preload: tuple[str, ...] = ()):
        self.workers = jobs
        self.slots = 2 * jobs
        self.description = f"local processes ({jobs} workers)"
        self._preload = preload
        self._pool = self._new_pool()
        self._pool_of: weakref.WeakKeyDictionary[cf.Future, cf.ProcessPoolExecutor] = weakref.WeakKeyDictionary()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return _pool(self.workers, self._preload)

    def start(self) -> None:
        """Start the forkserver now: it imports the simulator while the runner validates the experiment, and
        the workers are forked from it, ready, at the first submission (which would wait for it)."""
        start_forkserver(self._preload)

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        try:
            future = self._pool.submit(fn, *args)
        except cf.process.BrokenProcessPool:  # a worker died before the runner saw its futures fail
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            future = self._pool.submit(fn, *args)
        self._pool_of[future] = self._pool
        return future

    def wait(self, futures: Iterable[Any], timeout: float | None) -> set[Any]:
        done, _ = cf.wait(list(futures), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return done

    def after_failure(self, future: Any, exc: BaseException) -> bool:
        """A worker that died takes the pool and every chunk in it down: start a new pool (once) and have each
        of their runs retried alone, so only the run that kills its process is recorded as failed."""
        if not isinstance(exc, cf.process.BrokenProcessPool):
            return False
        if self._pool_of.get(future) is self._pool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
        return True

    def run_alone(self, fn: Callable[..., Any], calls: list[tuple[Any, ...]]) -> Iterator[Any]:
        """One worker process, one call at a time; a call that kills it gets the exception, next a new one."""
        pool = None
        try:
            for args in calls:
                if pool is None:
                    pool = _pool(1, self._preload)
                try:
                    yield pool.submit(fn, *args).result()
                except Exception as exc:  # noqa: BLE001 - handed to the caller, like a future's exception
                    if isinstance(exc, cf.process.BrokenProcessPool):
                        pool.shutdown(wait=False)
                        pool = None
                    yield exc
        finally:
            if pool is not None:
                pool.shutdown(wait=True)

    def release(self) -> None:
        self._pool.shutdown(wait=False)

    def close(self, cancel: bool = False) -> None:
        self._pool.shutdown(wait=True, cancel_futures=cancel)


def _pool(workers: int, modules: tuple[str, ...] = ()) -> cf.ProcessPoolExecutor:
    return cf.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=worker_context(modules),
        initializer=start_worker,
        initargs=(os.getpid(), modules),
    )


class DaskExecutor(Executor):
    """`--dask local` or `--dask tls://host:8786` (or tcp://).

    `local` starts a cluster of worker processes on this machine that only this runner can use: every listener
    is bound to 127.0.0.1 and speaks TLS with a key made for this batch and held in memory (a connection
    without it is refused), nothing serves HTTP (no dashboard), and the workers exit when the runner dies
    (dask_local.py). The cluster starts in the background while the runner validates the experiment.
    """

    def __init__(self, address: str, jobs: int | None, preload: tuple[str, ...] = ()):
        if address == "local":
            # the workers' forkserver imports Dask side by side with the runner's own import below
            start_forkserver((*DASK_WORKER_MODULES, *preload))
        try:
            import distributed
        except ImportError as exc:  # pragma: no cover - dask[distributed] is a dependency
            raise UserError(f"--dask needs dask[distributed] installed ({exc})") from None
        self._distributed = distributed
        self._local: Any = None
        self._client: Any = None
        self._threads, self._counted_at = 0, 0.0
        self._frozen = False
        if address == "local":
            from balloonsim.experiment.dask_local import SecureLocalCluster

            workers = jobs or os.cpu_count() or 1
            self._local = SecureLocalCluster(workers, preload)
            self.description = f"dask LocalCluster ({workers} worker processes, TLS on 127.0.0.1)"
            return
        if jobs is not None:
            raise UserError("--jobs does not apply to an existing Dask scheduler; its workers decide")
        if not _DASK_ADDRESS.match(address):
            raise UserError(f"--dask {address!r}: expected 'local' or a scheduler address like tcp://host:8786")
        try:
            self._client = distributed.Client(address, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise UserError(f"--dask {address}: cannot reach the scheduler ({exc})") from None
        threads = self._count_threads()
        self.description = f"dask scheduler {address} ({threads} worker threads at start)"

    def _count_threads(self) -> int:
        """The scheduler's worker threads now; a cluster's workers come and go (a job queue starts them late,
        adaptive scaling adds and retires them), so an existing scheduler is asked again every few seconds."""
        threads = sum(self._client.nthreads().values())
        self._threads, self._counted_at = threads, time.monotonic()
        return threads

    @property
    def workers(self) -> int:  # type: ignore[override]
        if self._local is not None:
            return self._local.workers
        if time.monotonic() - self._counted_at > RECOUNT_S:
            self._count_threads()
        return max(self._threads, 1)

    @property
    def slots(self) -> int:  # type: ignore[override]
        return 2 * self.workers

    def start(self) -> None:
        if self._local is not None:
            self._local.start()

    @property
    def client(self) -> Any:
        if self._client is None:
            assert self._local is not None
            self._client = self._local.client()
        if not self._frozen:
            # Dask's modules, scheduler and client are ~40,000 long-lived objects in the runner that every full
            # garbage collection while results arrive would walk again (one took 0.17 s of a 3 s batch); set
            # them aside until the batch is over (`close`).
            gc.freeze()
            self._frozen = True
        return self._client

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.client.submit(fn, *args, pure=False)

    def wait(self, futures: Iterable[Any], timeout: float | None) -> set[Any]:
        """As `Executor.wait`; a local cluster whose workers cannot start ends the wait with a UserError (checked
        every HEALTH_CHECK_S), rather than leaving the batch waiting for them for ever."""
        futures = list(futures)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = HEALTH_CHECK_S if deadline is None else max(0.0, min(HEALTH_CHECK_S, deadline - time.monotonic()))
            try:
                self._distributed.wait(futures, timeout=step, return_when="FIRST_COMPLETED")
            except TimeoutError:
                pass
            except Exception:  # noqa: BLE001 - e.g. cancelled futures: their `result` raises, handled per run
                pass
            done = {f for f in futures if f.done()}
            if done:
                return done
            failure = self._local.failure() if self._local is not None else None
            if failure:
                raise UserError(f"--dask local: {failure}")
            if deadline is not None and time.monotonic() >= deadline:
                return done

    def close(self, cancel: bool = False) -> None:
        if self._local is not None:
            self._local.close()
        elif self._client is not None:
            self._client.close()
        if self._frozen:
            gc.unfreeze()  # what became garbage meanwhile is collected again
            self._frozen = False


def make_executor(jobs: int | None = None, dask: str | None = None, preload: tuple[str, ...] = ()) -> Executor:
    """The executor for `--jobs` / `--dask`; `jobs` defaults to the number of cores. Workers import the modules
    in `preload` when they start."""
    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs {jobs}: must be at least 1")
    if dask:
        return DaskExecutor(dask, jobs, preload)
    jobs = jobs or os.cpu_count() or 1
    return InProcess() if jobs == 1 else LocalProcesses(jobs, preload)

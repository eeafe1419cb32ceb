"""Where runs execute: the main process (`--jobs 1`), local processes (`--jobs N`), or Dask (`--dask`).

All three offer the same small interface, so the runner has one code path: submit a run, wait for whichever
finishes first (with a timeout, so it can flush on time), take its result.  `slots` says how many runs to keep
in flight: enough to keep every worker busy, few enough that memory stays flat for designs of any size.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import logging
import multiprocessing
import os
import re
import signal
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from balloonsim.errors import UserError

_DASK_ADDRESS = re.compile(r"^([a-z]+://)?[^\s:/]+(:\d+)?$")


class Executor:
    """Runs functions somewhere and hands back futures."""

    description = ""
    workers = 1
    slots = 1

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        raise NotImplementedError

    def wait(self, futures: Iterable[Any], timeout: float | None) -> set[Any]:
        """The futures among `futures` that are finished, waiting at most `timeout` s for at least one."""
        raise NotImplementedError

    def result(self, future: Any) -> Any:
        return future.result()

    def after_failure(self, future: Any, exc: BaseException) -> bool:
        """`future` failed outside the run function; True if its run should be retried alone (`run_alone`)."""
        return False

    def run_alone(self, fn: Callable[..., Any], calls: list[tuple[Any, ...]]) -> Iterator[Any]:
        """`fn(*args)` for each args in turn, each where it can hurt no other: a result or the exception."""
        for args in calls:
            try:
                yield fn(*args)
            except Exception as exc:  # noqa: BLE001 - handed to the caller, like a future's exception
                yield exc

    def close(self, cancel: bool = False) -> None:
        """Release the workers; `cancel` drops queued work instead of waiting for it."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        self.close(cancel=exc_type is not None)


class InProcess(Executor):
    """`--jobs 1`: each run executes in the main process when submitted (easy to debug and profile)."""

    description = "in-process (1 worker)"

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        future: cf.Future = cf.Future()
        future.set_result(fn(*args))
        return future

    def wait(self, futures: Iterable[Any], timeout: float | None) -> set[Any]:
        return set(futures)


PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Worker initializer: the kernel sends SIGKILL to this worker when the runner dies (prctl
    PR_SET_PDEATHSIG), so killing only the runner leaves no worker behind; a runner already gone means exit."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: workers still end with the pool
        return
    if os.getppid() != parent_pid:
        os._exit(1)


def _worker_context() -> multiprocessing.context.BaseContext:
    """spawn: each worker a fresh interpreter and a direct child of the runner (so its CPU and exit are the
    runner's to account for). A preloaded forkserver was tried: it saved the workers' imports but measured no
    better on the quickstart (1.61-1.64x vs 1.60x) and hid the workers' CPU from the runner's rusage."""
    return multiprocessing.get_context("spawn")


class LocalProcesses(Executor):
    """`--jobs N`: a pool of N fresh Python processes (spawned, so no state leaks from the parent)."""

    def __init__(self, jobs: int):
        self.workers = jobs
        self.slots = 2 * jobs
        self.description = f"local processes ({jobs} workers)"
        self._pool = self._new_pool()
        self._pool_of: weakref.WeakKeyDictionary[cf.Future, cf.ProcessPoolExecutor] = weakref.WeakKeyDictionary()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return _pool(self.workers)

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        future = self._pool.submit(fn, *args)
        self._pool_of[future] = self._pool
        return future

    def wait(self, futures: Iterable[Any], timeout: float | None) -> set[Any]:
        done, _ = cf.wait(list(futures), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return done

    def after_failure(self, future: Any, exc: BaseException) -> bool:
        """A worker that died takes the pool and every run in it down: start a new pool (once) and have each
        of those runs retried alone, so only the run that kills its process is recorded as failed."""
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
                    pool = _pool(1)
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

    def close(self, cancel: bool = False) -> None:
        self._pool.shutdown(wait=True, cancel_futures=cancel)


def _pool(workers: int) -> cf.ProcessPoolExecutor:
    return cf.ProcessPoolExecutor(
        max_workers=workers, mp_context=_worker_context(), initializer=die_with_parent, initargs=(os.getpid(),)
    )


class DaskExecutor(Executor):
    """`--dask local` or `--dask tcp://host:8786`.

    `local` is an in-process LocalCluster (worker threads, the `inproc://` transport): nothing listens on a
    network port, there is no dashboard, and the workers end with the runner. A LocalCluster of processes
    listens on TCP without authentication, which lets any local user run code as this one. Threads share the
    interpreter lock, so `local` checks the Dask path rather than speeding it up: use `--jobs` on one machine.
    """

    def __init__(self, address: str, jobs: int | None):
        try:
            import distributed
        except ImportError as exc:  # pragma: no cover - dask[distributed] is a dependency
            raise UserError(f"--dask needs dask[distributed] installed ({exc})") from None
        self._distributed = distributed
        self._cluster = None
        if address == "local":
            workers = jobs or os.cpu_count() or 1
            self._cluster = _in_process_cluster(distributed, workers)
            self._client = distributed.Client(self._cluster)
            self.description = f"dask LocalCluster in-process ({workers} worker threads)"
        else:
            if jobs is not None:
                raise UserError("--jobs does not apply to an existing Dask scheduler; its workers decide")
            if not _DASK_ADDRESS.match(address):
                raise UserError(f"--dask {address!r}: expected 'local' or a scheduler address like tcp://host:8786")
            try:
                self._client = distributed.Client(address, timeout="10s")
            except (OSError, TimeoutError) as exc:
                raise UserError(f"--dask {address}: cannot reach the scheduler ({exc})") from None
            self.description = f"dask scheduler {address}"
        threads = sum(self._client.nthreads().values())
        self.workers = max(threads, 1)
        self.slots = max(2 * threads, 2)
        if self._cluster is None:
            self.description += f" ({threads} worker threads at start)"

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._client.submit(fn, *args, pure=False)

    def wait(self, futures: Iterable[Any], timeout: float | None) -> set[Any]:
        futures = list(futures)
        try:
            self._distributed.wait(futures, timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            return set()
        except Exception:  # noqa: BLE001 - e.g. cancelled futures: their `result` raises, handled per run
            pass
        return {f for f in futures if f.done()}

    def close(self, cancel: bool = False) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


def _in_process_cluster(distributed: Any, workers: int) -> Any:
    """A scheduler and `workers` single-threaded workers in this process, talking over `inproc://`, with no
    HTTP server: Dask's Scheduler and Worker always start one (health, metrics, API routes) even without a
    dashboard, so theirs is made and never bound to a port."""
    from distributed.http.routing import RoutingApplication
    from tornado.httpserver import HTTPServer

    class NoHttp:
        def start_http_server(self, routes: Any, dashboard_address: Any, default_port: int = 0, **_: Any) -> None:
            self.http_application = RoutingApplication(routes)
            self.http_server = HTTPServer(self.http_application)

    class Scheduler(NoHttp, distributed.Scheduler):
        pass

    class Worker(NoHttp, distributed.Worker):
        pass

    return distributed.SpecCluster(
        scheduler={"cls": Scheduler, "options": {"protocol": "inproc://", "dashboard": False}},
        workers={i: {"cls": Worker, "options": {"nthreads": 1, "dashboard": False}} for i in range(workers)},
        silence_logs=logging.ERROR,
        asynchronous=False,
    )


def make_executor(jobs: int | None = None, dask: str | None = None) -> Executor:
    """The executor for `--jobs` / `--dask`; `jobs` defaults to the number of cores."""
    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs {jobs}: must be at least 1")
    if dask:
        return DaskExecutor(dask, jobs)
    jobs = jobs or os.cpu_count() or 1
    return InProcess() if jobs == 1 else LocalProcesses(jobs)

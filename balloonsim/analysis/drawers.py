"""Processes that draw figures, started so that matplotlib is imported once, not once per process.

multiprocessing.Pool forks every worker from the caller, so each imports matplotlib (a third of a second of
CPU) by itself, at the same time, on the cores the caller needs for the comparisons. Here the caller forks one
drawer; it imports the drawing modules and then forks the others, which start with them loaded. All take jobs
from one queue and answer on another, in whatever order they finish; `Drawers.result` waits for one job.

A figure allocates tens of thousands of small objects, so Python's cyclic collector would run hundreds of times
per figure, and each full run would walk (and, in a forked child, copy) everything inherited from the caller.
A drawer freezes what it inherited and imported, and collects once after each figure instead.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import queue
import signal
from collections.abc import Callable
from typing import Any

from balloonsim.experiment.lifetime import die_with_runner

POLL_S = 1.0  # how often a waiting caller checks that the first drawer is still alive
STOP_S = 5.0  # how long the first drawer may take to stop the others and exit when told to


class Drawers:
    """`workers` forked processes (at least one) running `run(name, args)` for each submitted job, after
    `load()` (the imports) in the first of them."""

    def __init__(self, workers: int, load: Callable[[], None], run: Callable[[str, tuple], Any]):
        ctx = multiprocessing.get_context("fork")
        self._jobs = ctx.Queue()
        self._answers = ctx.Queue()
        self._workers = max(1, workers)
        self._first = ctx.Process(
            target=_serve,
            args=(self._jobs, self._answers, load, run, self._workers - 1, os.getpid()),
            name="balloonsim-drawer",
        )
        self._first.start()
        self._pids = {self._first.pid}
        self._next = 0
        self._done: dict[int, tuple[bool, Any]] = {}

    def submit(self, name: str, args: tuple) -> Pending:
        job = self._next
        self._next += 1
        self._jobs.put((job, name, args))
        return Pending(self, job)

    def result(self, job: int):
        """The value job `job` returned, or its exception raised here."""
        while job not in self._done:
            try:
                ok, key, value = self._answers.get(timeout=POLL_S)
            except queue.Empty:
                if not self._first.is_alive():
                    raise RuntimeError(f"a drawing process died (exit code {self._first.exitcode})") from None
                continue
            if key is None:  # a drawer's process id, for close()
                self._pids.add(value)
            else:
                self._done[key] = (ok, value)
        ok, value = self._done.pop(job)
        if not ok:
            raise value
        return value

    def close(self, wait: bool = True) -> None:
        """Stop the drawers: after their queued jobs (wait), or at once."""
        if wait:
            for _ in range(self._workers):
                self._jobs.put(None)
            self._first.join()
        else:
            self._jobs.cancel_join_thread()  # jobs nobody will read must not hold up this process' exit
            self._first.terminate()  # it stops the others before it exits (see _serve)
            self._first.join(STOP_S)
            for pid in self._pids if self._first.is_alive() else ():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self._first.join()
        self._jobs.close()
        self._answers.close()


class Pending:
    """One submitted job: `get()` waits for its value."""

    def __init__(self, drawers: Drawers, job: int):
        self._drawers, self._job = drawers, job

    def get(self):
        return self._drawers.result(self._job)


def _serve(
    jobs, answers, load: Callable[[], None] | None, run: Callable[[str, tuple], Any], siblings: int, caller: int
) -> None:
    """A drawer: the first loads, then forks `siblings` more that share its queues (and what it loaded), and
    waits for them. Ctrl-C is the caller's to handle: it stops the drawers (close), none prints a traceback. Each
    ends when the caller ends, however it ends (a drawer holds the job queue's writing end too, so it would
    otherwise wait for a job for ever)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_runner(caller)
    gc.disable()  # collected between figures instead (below)
    if load is not None:
        load()
    gc.freeze()  # what was inherited and imported: never collected, never walked (nor copied) by a collection
    ctx = multiprocessing.get_context("fork")
    others = [
        ctx.Process(target=_serve, args=(jobs, answers, None, run, 0, caller), name="balloonsim-drawer")
        for _ in range(siblings)
    ]
    for other in others:
        other.start()
    if others:
        signal.signal(signal.SIGTERM, lambda signum, _frame: _stop(others, signum))
    answers.put((True, None, os.getpid()))  # before any answer of this drawer: close() can then stop it
    while (job := jobs.get()) is not None:
        key, name, args = job
        try:
            answers.put((True, key, run(name, args)))
        except Exception as exc:  # noqa: BLE001 - handed to the caller, who raises it
            answers.put((False, key, _picklable(exc)))
        gc.collect()  # the figure's reference cycles, once it is written
    for other in others:
        other.join()


def _stop(others, signum: int) -> None:
    """The first drawer, told to stop: stop the drawers it forked and wait for them, so that none outlives it."""
    for other in others:
        other.terminate()
    for other in others:
        other.join()
    os._exit(128 + signum)


def _picklable(exc: Exception) -> Exception:
    """The exception itself when it can be sent back, else its type and message (the caller must not hang)."""
    try:
        pickle.dumps(exc)
    except Exception:  # noqa: BLE001 - any failure to pickle
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc

"""The batch runner: start the workers, validate, skip what is done, keep the workers busy with chunks of runs,
commit runs as they come back.

Only a bounded number of chunks is in flight and finished runs are committed within about a second, so memory
stays flat however large the design, and an interrupted batch loses at most the chunks that were executing.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from balloonsim.collector import long_lived_set_aside
from balloonsim.experiment.chunks import ChunkSizer
from balloonsim.experiment.design import RunSpec, count_points
from balloonsim.experiment.executors import Executor, make_executor
from balloonsim.experiment.forkserver import SIMULATOR_MODULES
from balloonsim.experiment.loader import check_experiment_runs, load_experiment
from balloonsim.experiment.overrides import apply_overrides
from balloonsim.experiment.spec import Experiment, experiment_from_dict
from balloonsim.experiment.store import FlushPolicy, ResultStore, StoreOptions, check_target, finished
from balloonsim.experiment.worker import (
    ChunkResult,
    RunFn,
    RunOutcome,
    error_text,
    execute_chunk,
    execute_run,
)

MAX_ERRORS_KEPT = 10


@dataclass
class BatchSummary:
    """What a batch did; `failed` > 0 means exit code 1."""

    experiment: str
    out_dir: Path
    total: int
    ok: int
    failed: int
    skipped: int
    ran: int
    wall_time_s: float
    executor: str
    status: str
    errors: list[tuple[str, str]] = field(default_factory=list)
    unchanged: bool = False  # everything was done already: nothing ran, nothing was written
    repaired: int = 0  # runs recorded ok but found incomplete on disk, run again
    workers_cpu_s: float | None = None  # CPU time of the worker processes (None: the runs ran in this process)

    @property
    def pending(self) -> int:
        return self.total - self.ok - self.failed

    def text(self) -> str:
        if self.unchanged:
            return f"{self.experiment}: all {self.total} runs are done already in {self.out_dir}; nothing changed"
        lines = [
            f"{self.experiment}: {self.total} runs: {self.ok} ok ({self.skipped} done before), "
            f"{self.failed} failed, {self.pending} not run; {self.ran} ran in {self.wall_time_s:.1f} s "
            f"on {self.executor} -> {self.out_dir}"
        ]
        if self.repaired:
            lines.append(f"  {self.repaired} runs recorded before were incomplete on disk and ran again")
        for rid, error in self.errors:
            lines.append(f"  failed {rid}: {error}")
        if self.failed > len(self.errors):
            lines.append(f"  ... and {self.failed - len(self.errors)} more failures (see runs.csv)")
        if self.failed or self.pending:
            lines.append("  rerun the same command to retry failed and unfinished runs")
        return "\n".join(lines)


def default_out_dir(exp: Experiment) -> Path:
    return Path("results") / exp.name


def resolve_experiment(
    source: str | Path | Experiment, overrides: Sequence[str] = (), check_runs: bool = True
) -> Experiment:
    """An Experiment from a file or an object, with `--set` overrides applied and every run validated."""
    if not isinstance(source, Experiment):
        return load_experiment(source, overrides, check_runs=check_runs)
    exp = source
    if overrides:
        doc, _ = apply_overrides(exp.model_dump(mode="python"), overrides)
        exp = experiment_from_dict(doc, source_text=None, overrides=[*exp.overrides, *overrides])
    if check_runs:
        check_experiment_runs(exp)
    return exp


def run_experiment(
    source: str | Path | Experiment,
    out_dir: str | Path | None = None,
    jobs: int | None = None,
    dask: str | None = None,
    overrides: Sequence[str] = (),
    force: bool = False,
    quiet: bool = True,
    events: bool = False,
    timeseries: str = "parquet",
    run_fn: RunFn | None = None,
    check_runs: bool | None = None,
    flush: FlushPolicy | None = None,
) -> BatchSummary:
    """Run (or resume) an experiment into `out_dir` (default `results/<name>`).

    `run_fn(config, seed) -> RunResult` replaces `balloonsim.simulate` (it must be importable by workers);
    run configurations are validated with `balloonsim.sim.world.check_run` unless `check_runs` is False
    (default: only when the real simulator is used).  Bad input raises UserError/ConfigError before anything
    is written.  The workers start first, so that their start-up overlaps the validation.
    """
    check = run_fn is None if check_runs is None else check_runs
    exp = resolve_experiment(source, overrides, check_runs=False)
    out = Path(out_dir) if out_dir is not None else default_out_dir(exp)
    options = StoreOptions(timeseries=timeseries, events=events)
    total = count_points(exp) * exp.replications
    if not force and finished(out, exp, options):
        if check:
            check_experiment_runs(exp)
        return BatchSummary(exp.name, out, total, total, 0, total, 0, 0.0, "", "complete", unchanged=True)
    with make_executor(jobs, dask, preload=SIMULATOR_MODULES if run_fn is None else ()) as executor:
        executor.start()
        if check:
            check_experiment_runs(exp)
        check_target(out, exp, options, force)
        store = ResultStore.open(out, exp, options, force=force, executor=executor.description, policy=flush)
        return _run_batch(exp, store, executor, total, run_fn, quiet)


def _run_batch(
    exp: Experiment, store: ResultStore, executor: Executor, total: int, run_fn: RunFn | None, quiet: bool
) -> BatchSummary:
    from balloonsim.experiment.progress import Progress

    skipped = len(store.done)
    todo = (spec for spec in store.iter_runs() if spec.run_id not in store.done)
    progress = Progress(total, skipped, exp.name, quiet)
    errors: list[tuple[str, str]] = []
    started = time.perf_counter()
    status = "interrupted"
    sizer = ChunkSizer(executor.workers, chunked=executor.chunked)
    cpu = WorkerCpu()
    # the runner's imports and state set aside from the garbage collector: runs done here (--jobs 1), results
    # coming back and the files' merge collect only their own garbage
    with long_lived_set_aside():
        try:
            _drain(todo, store, executor, run_fn, progress, errors, sizer, total - skipped, cpu)
            status = "complete" if store.failed_count == 0 else "incomplete"
            executor.release()  # the workers exit while the files are finished
        finally:
            progress.close()
            counts = {
                "runs": total,
                "ok": len(store.done),
                "failed": store.failed_count,
                "pending": total - len(store.done) - store.failed_count,
            }
            store.close(status, counts, finalize=status != "interrupted")
    return BatchSummary(
        experiment=exp.name,
        out_dir=store.directory,
        total=total,
        ok=len(store.done),
        failed=store.failed_count,
        skipped=skipped,
        ran=store.ok_count + store.failed_count,
        wall_time_s=time.perf_counter() - started,
        executor=executor.description,
        status=status,
        errors=errors,
        repaired=store.repaired,
        workers_cpu_s=cpu.total if executor.chunked else None,
    )


class WorkerCpu:
    """The CPU time each worker process had used by its last chunk, summed: the workers' CPU whoever started
    them (a pool, a forkserver, another machine), which the runner's own rusage cannot see."""

    def __init__(self) -> None:
        self._by_worker: dict[str, float] = {}

    def record(self, chunk: ChunkResult) -> None:
        self._by_worker[chunk.worker] = max(self._by_worker.get(chunk.worker, 0.0), chunk.process_cpu_s)

    @property
    def total(self) -> float:
        return sum(self._by_worker.values())


def _drain(
    todo: Iterable[RunSpec],
    store: ResultStore,
    executor: Executor,
    run_fn: RunFn | None,
    progress: Any,
    errors: list[tuple[str, str]],
    sizer: ChunkSizer | None = None,
    remaining: int = 0,
    cpu: WorkerCpu | None = None,
) -> None:
    """Keep `executor.slots` chunks in flight, sized by `sizer`; commit each run as its chunk comes back.

    Where the work runs elsewhere, the slots are filled again before the runs that came back are committed:
    committing the first ones loads the runner's table code (about 0.05 s), and the workers would otherwise wait
    that long with nothing to run.
    A chunk that fails outside the run function (its worker died) is split: with local processes each of its
    runs is retried alone in a fresh process (`run_alone`), elsewhere each goes back in the queue as a chunk of
    one, and only a chunk of one that fails again is recorded as failed.
    """
    events = store.events is not None
    sizer = sizer or ChunkSizer(executor.workers, chunked=executor.chunked)
    todo = iter(todo)
    retry: deque[RunSpec] = deque()
    in_flight: dict[Any, list[RunSpec]] = {}

    def fill() -> None:
        nonlocal remaining
        sizer.workers = max(1, executor.workers)  # a Dask cluster's workers may come and go
        while len(in_flight) < executor.slots:
            if retry:
                chunk = [retry.popleft()]
            else:
                chunk = list(itertools.islice(todo, sizer.next_size(remaining)))
                remaining = max(0, remaining - len(chunk))
                if not chunk:
                    break
            in_flight[executor.submit(execute_chunk, chunk, run_fn, events)] = chunk

    while True:
        fill()
        if not in_flight:
            break
        suspects: list[RunSpec] = []
        back: list[tuple[RunSpec, RunOutcome]] = []  # what came back, in the order it is committed
        for future in executor.wait(in_flight, timeout=store.seconds_until_due()):
            chunk = in_flight.pop(future)
            try:
                result: ChunkResult = executor.result(future)
            except Exception as exc:  # noqa: BLE001 - the worker itself failed; record it, go on
                if executor.after_failure(future, exc):
                    suspects.extend(chunk)
                elif len(chunk) > 1:
                    retry.extend(chunk)
                else:
                    back.append((chunk[0], RunOutcome(chunk[0].run_id, ok=False, error=error_text(exc))))
                continue
            if cpu is not None:
                cpu.record(result)
            sizer.observe(outcome.cpu_time_s or outcome.wall_time_s for outcome in result.outcomes)
            back.extend(zip(chunk, result.outcomes, strict=True))
        if executor.elsewhere and not suspects:  # (when workers died, their runs are retried alone first)
            fill()
        for spec, outcome in back:
            _record(spec, outcome, store, progress, errors)
        calls = [(spec, run_fn, events) for spec in suspects]
        for spec, outcome in zip(suspects, executor.run_alone(execute_run, calls), strict=True):
            if isinstance(outcome, Exception):  # it died alone: this run is the one that kills its worker
                outcome = RunOutcome(run_id=spec.run_id, ok=False, error=error_text(outcome))
            _record(spec, outcome, store, progress, errors)
        if store.due():
            store.flush()
    store.flush()


def _record(
    spec: RunSpec, outcome: RunOutcome, store: ResultStore, progress: Any, errors: list[tuple[str, str]]
) -> None:
    store.add(spec, outcome)
    if not outcome.ok and len(errors) < MAX_ERRORS_KEPT:
        errors.append((spec.run_id, outcome.error))
    progress.advance(outcome.ok)

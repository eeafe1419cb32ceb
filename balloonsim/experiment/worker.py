"""What runs inside a worker (a local process, a Dask worker, or the main process with `--jobs 1`).

Workers are handed chunks of runs (`execute_chunk`) and send back one outcome per run. A run that raises becomes
a failed outcome with a one-line error rather than an exception, so one bad run never stops the batch.

A worker stays lean: it imports the simulator and numpy, not pandas or pyarrow. The simulation's rows travel
back as `Columns` and the runner, which writes the Parquet files, makes Arrow tables of them.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from balloonsim.experiment.columns import Columns
from balloonsim.sim.result import RunRows

if TYPE_CHECKING:
    from balloonsim.experiment.design import RunSpec

RunFn = Callable[[dict[str, Any], int], Any]
MAX_ERROR_CHARS = 500


@dataclass
class RunOutcome:
    """The result of one run as the store records it. `timeseries` and `events` are `Columns` (from the
    simulator) or DataFrames (from a run function that returns them); the runner makes Arrow tables of both."""

    run_id: str
    ok: bool
    error: str = ""
    metrics: dict[str, int | float | bool | str | None] = field(default_factory=dict)
    timeseries: Any = None
    events: Any = None
    wall_time_s: float = 0.0
    worker: str = ""
    cpu_time_s: float = 0.0  # the worker process's CPU time during the run: what sizes the chunks


@dataclass
class ChunkResult:
    """A chunk's outcomes, in the order of its runs, and the CPU time its worker process had used by the end
    (how the runner accounts for workers it did not start itself, e.g. Dask's or a forkserver's)."""

    outcomes: list[RunOutcome]
    worker: str
    process_cpu_s: float


def simulate_run(config: dict[str, Any], seed: int) -> Any:
    """The default run function: one real simulation, its tables as the rows recorded (no DataFrames)."""
    from balloonsim.sim.simulation import simulate_rows

    return simulate_rows(config, seed=seed)


def execute_chunk(specs: Sequence[RunSpec], run_fn: RunFn | None = None, events: bool = False) -> ChunkResult:
    """Run each spec in turn; never raises for a failing run (KeyboardInterrupt and the like still propagate)."""
    outcomes = [execute_run(spec, run_fn, events) for spec in specs]
    return ChunkResult(outcomes, worker_name(), time.process_time())


def execute_run(spec: RunSpec, run_fn: RunFn | None = None, events: bool = False) -> RunOutcome:
    """Run one spec; never raises for a failing run (KeyboardInterrupt and the like still propagate)."""
    run_fn = run_fn or simulate_run
    started, cpu = time.perf_counter(), time.process_time()
    try:
        result = run_fn(spec.config, spec.seed)
        outcome = RunOutcome(
            run_id=spec.run_id,
            ok=True,
            metrics=_metrics(result.metrics),
            timeseries=_table(result, "timeseries"),
            events=_table(result, "events") if events else None,
        )
    except Exception as exc:  # noqa: BLE001 - a failing run is data, recorded and reported
        outcome = RunOutcome(run_id=spec.run_id, ok=False, error=error_text(exc))
    outcome.wall_time_s = time.perf_counter() - started
    outcome.cpu_time_s = time.process_time() - cpu
    outcome.worker = worker_name()
    return outcome


def error_text(exc: BaseException) -> str:
    """`ExcType: message` on one line, bounded in length."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def worker_name() -> str:
    """The Dask worker's address inside a Dask worker, else host:pid.

    A Dask worker has `distributed` loaded already; importing it anywhere else to ask would cost a local
    worker (or the runner under `--jobs 1`) a second of imports on its first run.
    """
    distributed = sys.modules.get("distributed")
    if distributed is not None:
        try:
            return distributed.get_worker().address
        except ValueError:  # loaded, but this is not a Dask worker
            pass
    return f"{socket.gethostname()}:{os.getpid()}"


def _metrics(metrics: Any) -> dict[str, int | float | bool | str | None]:
    """A flat row of scalars; numpy scalars become Python ones so every executor writes the same text."""
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a mapping, got {type(metrics).__name__}")
    out: dict[str, int | float | bool | str | None] = {}
    for key, value in metrics.items():
        if isinstance(value, np.generic):
            value = value.item()
        if value is not None and not isinstance(value, int | float | bool | str):
            raise TypeError(f"metric {key!r} is a {type(value).__name__}; expected a number, bool or string")
        out[str(key)] = value
    return out


def _table(result: Any, name: str) -> Any:
    """The result's `name` table as it should travel: what the simulator recorded (its `RunRows`) becomes
    `Columns`, a DataFrame goes as it is; None when there is nothing to keep."""
    if isinstance(result, RunRows):
        if name == "timeseries":
            return Columns.from_arrays(result.timeseries_columns())
        return Columns.from_rows(result.event_columns, result.events)
    data = getattr(result, name, None)
    if data is None:
        return None
    return data if len(data.columns) and len(data) else None

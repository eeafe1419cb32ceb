"""What runs inside a worker (a local process, a Dask worker, or the main process with `--jobs 1`).

A run that raises becomes a failed outcome with a one-line error rather than an exception, so one bad run
never stops the batch.  Tables become Arrow here, in the worker, so the main process only writes them.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from balloonsim.experiment.design import RunSpec

RunFn = Callable[[dict[str, Any], int], Any]
MAX_ERROR_CHARS = 500


@dataclass
class RunOutcome:
    """The result of one run as the store records it."""

    run_id: str
    ok: bool
    error: str = ""
    metrics: dict[str, int | float | bool | str | None] = field(default_factory=dict)
    timeseries: pa.Table | None = None
    events: pa.Table | None = None
    wall_time_s: float = 0.0
    worker: str = ""


def simulate_run(config: dict[str, Any], seed: int) -> Any:
    """The default run function: one real simulation."""
    from balloonsim import simulate

    return simulate(config, seed=seed)


def execute_run(spec: RunSpec, run_fn: RunFn | None = None, events: bool = False) -> RunOutcome:
    """Run one spec; never raises for a failing run (KeyboardInterrupt and the like still propagate)."""
    run_fn = run_fn or simulate_run
    started = time.perf_counter()
    try:
        result = run_fn(spec.config, spec.seed)
        outcome = RunOutcome(
            run_id=spec.run_id,
            ok=True,
            metrics=_metrics(result.metrics),
            timeseries=_table(spec.run_id, getattr(result, "timeseries", None)),
            events=_table(spec.run_id, getattr(result, "events", None)) if events else None,
        )
    except Exception as exc:  # noqa: BLE001 - a failing run is data, recorded and reported
        outcome = RunOutcome(run_id=spec.run_id, ok=False, error=error_text(exc))
    outcome.wall_time_s = time.perf_counter() - started
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


def _table(rid: str, frame: Any) -> pa.Table | None:
    """A DataFrame as an Arrow table with a leading `run_id` column; None when there is nothing to keep."""
    if frame is None or len(frame.columns) == 0:
        return None
    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    if table.num_rows == 0:
        return None
    return table.add_column(0, "run_id", pa.array([rid] * table.num_rows, pa.string()))

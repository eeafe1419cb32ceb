"""Experiments: declarative sweeps over single-run scenarios, run locally or on Dask, results on disk.

from balloonsim.experiment import load_experiment, run_experiment, load_results
summary = run_experiment("experiments/quickstart.toml", jobs=2)
runs = load_results(summary.out_dir)

The names load on first use: a worker process imports `balloonsim.experiment.worker`, which runs this file, and
must not pay for pandas and pyarrow (the runner's and the analysis' libraries).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from balloonsim.experiment.design import RunSpec, iter_runs
    from balloonsim.experiment.loader import load_experiment
    from balloonsim.experiment.results import load_events, load_results, load_timeseries
    from balloonsim.experiment.runner import BatchSummary, run_experiment
    from balloonsim.experiment.spec import Experiment, experiment_from_dict

_WHERE = {
    "BatchSummary": "runner",
    "Experiment": "spec",
    "RunSpec": "design",
    "experiment_from_dict": "spec",
    "iter_runs": "design",
    "load_events": "results",
    "load_experiment": "loader",
    "load_results": "results",
    "load_timeseries": "results",
    "run_experiment": "runner",
}

__all__ = [
    "BatchSummary",
    "Experiment",
    "RunSpec",
    "experiment_from_dict",
    "iter_runs",
    "load_events",
    "load_experiment",
    "load_results",
    "load_timeseries",
    "run_experiment",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)

"""Experiments: declarative sweeps over single-run scenarios, run locally or on Dask, results on disk.

from balloonsim.experiment import load_experiment, run_experiment, load_results
summary = run_experiment("experiments/quickstart.toml", jobs=2)
runs = load_results(summary.out_dir)
"""

from balloonsim.experiment.design import RunSpec, iter_runs
from balloonsim.experiment.loader import load_experiment
from balloonsim.experiment.results import load_events, load_results, load_timeseries
from balloonsim.experiment.runner import BatchSummary, run_experiment
from balloonsim.experiment.spec import Experiment, experiment_from_dict

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

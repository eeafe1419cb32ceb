"""Workers stay lean: Dask only under `--dask` (a local worker that imported `distributed` would pay about a
second), and no pandas or pyarrow at all when they run the real simulator (they send plain columns back); the
runner writes their tables with pyarrow but without pandas.

The probe runs report which libraries their worker process had loaded. With more runs than workers, some
worker runs a second time after recording the first (which names the worker), so a lazy import there shows.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from experiment_support import subprocess_env

HERE = Path(__file__).resolve().parent

# A fresh runner process (the test process may have imported Dask for other tests): run the batch with the
# given executor, then say whether the runner itself loaded distributed (and pandas).
DRIVER = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {here!r})
    from {module} import {function}
    from balloonsim.experiment import experiment_from_dict, run_experiment
    exp = experiment_from_dict({doc!r})
    summary = run_experiment(exp, out_dir={out!r}, jobs={jobs}, dask={dask!r}, run_fn={function}, check_runs=False)
    loaded = {{"runner": "distributed" in sys.modules, "runner_pandas": "pandas" in sys.modules}}
    print(json.dumps({{"ok": summary.ok, **loaded}}))
    """
)
FAKE = {"name": "w", "factors": {"fake.k": [1, 2, 3]}, "replications": 2}
REAL = {"name": "r", "base": {"duration": "10min"}, "factors": {"onlining.delay": [0, 5, 30]}, "replications": 2}


def _batch(
    tmp_path: Path, jobs: int, dask: str | None, probe: tuple[str, str] = ("experiment_fakes", "modules_run"), doc=FAKE
) -> tuple[dict, pd.DataFrame]:
    out = tmp_path / "out"
    module, function = probe
    code = DRIVER.format(here=str(HERE), out=str(out), jobs=jobs, dask=dask, module=module, function=function, doc=doc)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), pd.read_csv(out / "runs.csv")


@pytest.mark.parametrize("jobs", [1, 2])
def test_local_workers_and_runner_do_not_import_dask(tmp_path, jobs):
    said, runs = _batch(tmp_path, jobs, None)
    assert said["ok"] == 6 and len(runs) == 6
    assert not runs["distributed_loaded"].any()
    assert said["runner"] is False


@pytest.mark.slow
def test_dask_workers_have_it(tmp_path):
    """The control: under --dask the same probe sees distributed, so the check above can fail."""
    said, runs = _batch(tmp_path, 2, "local")
    assert said["ok"] == 6 and runs["distributed_loaded"].all()
    assert said["runner"] is True


@pytest.mark.slow
def test_a_dask_runner_loads_no_pandas(tmp_path):
    """Neither the tables the runner writes nor Dask's start (whose nannies would import pandas to name it as a
    forkserver preload) load pandas in the runner."""
    said, runs = _batch(tmp_path, 2, "local", ("lean_probe", "probe_run"), REAL)
    assert said["ok"] == 6 and runs["distributed_loaded"].all()
    assert said["runner"] is True and said["runner_pandas"] is False


def test_local_workers_running_the_simulator_load_neither_pandas_nor_pyarrow(tmp_path):
    said, runs = _batch(tmp_path, 2, None, ("lean_probe", "probe_run"), REAL)
    assert said["ok"] == 6 and (runs["status"] == "ok").all()
    for name in ("pandas", "pyarrow", "scipy", "matplotlib", "distributed"):
        assert not runs[f"{name}_loaded"].any(), name
    series = pd.read_parquet(tmp_path / "out" / "timeseries.parquet")
    assert set(series["run_id"]) == set(runs["run_id"])  # the runner made the tables the workers did not
    assert said["runner_pandas"] is False  # and made them without pandas (balloonsim.experiment.arrow)


# A fresh runner process (the test process may run a forkserver with another preload already): one local worker
# forked from a forkserver that preloaded `modules`, asked what it has loaded before its first run.
FORKED = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {here!r})
    from lean_probe import loaded_modules
    from balloonsim.experiment.executors import LocalProcesses
    with LocalProcesses(1, {modules!r}) as executor:
        executor.start()
        print(json.dumps(executor.submit(loaded_modules).result()))
    """
)


def _forked_worker_modules(modules: tuple[str, ...]) -> set[str]:
    code = FORKED.format(here=str(HERE), modules=modules)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_local_workers_are_forked_with_the_plugins_and_chunk_types_loaded():
    """The forkserver imports balloonsim's plugins and what a chunk travels as once, so that no worker loads them
    at its first runs (when every worker would at once); the control, the simulator alone, shows they are not
    there by themselves. Still no pandas or pyarrow."""
    from balloonsim.experiment.forkserver import SIMULATOR_MODULES

    wanted = {"balloonsim.memmap.kmalloc", "balloonsim.drivers.hyperv", "balloonsim.sim.workloads"}
    wanted |= {"balloonsim.experiment.design", "balloonsim.experiment.worker"}
    preloaded = _forked_worker_modules(SIMULATOR_MODULES)
    assert wanted <= preloaded
    assert not {"pandas", "pyarrow"} & preloaded
    assert not {"balloonsim.memmap.kmalloc", "balloonsim.drivers.hyperv"} & _forked_worker_modules(
        ("balloonsim.sim.simulation",)
    )

"""A study on a real Dask cluster: `dask scheduler` and two `dask worker` processes started from their command
lines (as on a cluster's nodes, not a LocalCluster), `balloonsim run --dask ADDRESS`, and the same runs.csv,
byte for byte, as a local run."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest
from experiment_support import DATA, REPO, balloonsim_command, subprocess_env

from balloonsim.bench.cluster import dask_command, start_cluster, stop_cluster

SMALL = DATA / "small.toml"


@pytest.mark.slow
def test_a_study_on_a_scheduler_and_two_workers_started_from_the_command_line(tmp_path):
    if dask_command() is None:
        pytest.skip("the `dask` command is not installed")
    env = subprocess_env()
    local = tmp_path / "local"
    subprocess.run(
        [*balloonsim_command(), "run", str(SMALL), "--out", str(local), "--jobs", "1", "-q", "--no-report"],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )

    address, procs = start_cluster(2, tmp_path, env)
    try:
        assert address.startswith("tcp://127.0.0.1:")
        remote = tmp_path / "remote"
        done = subprocess.run(
            [*balloonsim_command(), "run", str(SMALL), "--out", str(remote), "--dask", address, "-q", "--no-report"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        stop_cluster(procs)

    assert (remote / "runs.csv").read_bytes() == (local / "runs.csv").read_bytes()
    meta = json.loads((remote / "metadata.json").read_text())
    assert meta["executor"] == f"dask scheduler {address} (2 worker threads at start)"
    workers = set(pd.read_csv(remote / "timing.csv")["worker"])
    assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers)  # both did runs
    # the time series in design order: the same bytes as the local run's, whichever worker finished first
    assert (remote / "timeseries.parquet").read_bytes() == (local / "timeseries.parquet").read_bytes()

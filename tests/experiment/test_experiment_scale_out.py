"""A study on a real Dask cluster: `dask scheduler` and two `dask worker` processes started from their command
lines (as on a cluster's nodes, not a LocalCluster), `balloonsim run --dask ADDRESS`, and the same runs.csv,
byte for byte, as a local run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from experiment_support import DATA, REPO, balloonsim_command, subprocess_env

SMALL = DATA / "small.toml"


def _dask_command() -> list[str]:
    """The `dask` command line of this interpreter's environment."""
    exe = Path(sys.executable).parent / "dask"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("dask")
    if found is None:
        pytest.skip("the `dask` command is not installed")
    return [found]


def _wait_for_address(scheduler_file: Path, procs: list[subprocess.Popen], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        for proc in procs:
            assert proc.poll() is None, f"{proc.args} exited with {proc.returncode}"
        try:
            return json.loads(scheduler_file.read_text())["address"]
        except (OSError, ValueError, KeyError):
            pass
        assert time.monotonic() < deadline, "the scheduler did not write its address"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_study_on_a_scheduler_and_two_workers_started_from_the_command_line(tmp_path):
    import distributed

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

    scheduler_file = tmp_path / "scheduler.json"
    dask = _dask_command()
    procs: list[subprocess.Popen] = []
    try:
        procs.append(
            subprocess.Popen(
                [*dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
                + ["--scheduler-file", str(scheduler_file)],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        address = _wait_for_address(scheduler_file, procs, 60)
        assert address.startswith("tcp://127.0.0.1:")
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [*dask, "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-dashboard"],
                    cwd=tmp_path,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        with distributed.Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=120)

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
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    assert (remote / "runs.csv").read_bytes() == (local / "runs.csv").read_bytes()
    meta = json.loads((remote / "metadata.json").read_text())
    assert meta["executor"] == f"dask scheduler {address} (2 worker threads at start)"
    workers = set(pd.read_csv(remote / "timing.csv")["worker"])
    assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers)  # both did runs
    # the time series in design order: the same bytes as the local run's, whichever worker finished first
    assert (remote / "timeseries.parquet").read_bytes() == (local / "timeseries.parquet").read_bytes()

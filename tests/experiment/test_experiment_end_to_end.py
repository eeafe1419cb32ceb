"""Real batches of the real simulator through `balloonsim run`: executors agree, SIGKILL loses nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from experiment_support import DATA, REPO, balloonsim_command, subprocess_env

from balloonsim.cli import cli
from balloonsim.experiment import load_events, load_experiment, load_results, load_timeseries
from balloonsim.experiment.csvlog import complete_lines
from balloonsim.experiment.design import iter_runs

SMALL = DATA / "small.toml"


def invoke(*args: str):
    result = CliRunner().invoke(cli, ["run", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def sorted_rows(out: Path) -> tuple[str, list[str]]:
    lines = (out / "runs.csv").read_text().splitlines()
    return lines[0], sorted(lines[1:])


def data_rows(path: Path) -> int:
    try:
        return max(0, sum(1 for _ in complete_lines(path)) - 1)
    except FileNotFoundError:
        return 0


def assert_each_series_once(series: pd.DataFrame) -> None:
    """A run stored twice would restart its clock: within a run, in file order, t never goes back.

    (Equal t can occur: a crashed guest's last sample shares the time of the regular sample before it.)
    """
    steps = series.groupby("run_id", sort=False)["t"].diff().dropna()
    assert (steps >= 0).all()
    assert (series.groupby("run_id")["t"].min() == 0).all()


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@pytest.mark.slow
def test_jobs_1_jobs_2_and_dask_write_identical_runs_csv(tmp_path):
    outs = {}
    for name, args in {
        "jobs1": ["--jobs", "1"],
        "jobs2": ["--jobs", "2"],
        "dask": ["--dask", "local", "--jobs", "2"],
    }.items():
        outs[name] = tmp_path / name
        invoke(str(SMALL), "--out", str(outs[name]), "--quiet", "--no-report", *args)

    reference = (outs["jobs1"] / "runs.csv").read_bytes()
    assert (outs["jobs2"] / "runs.csv").read_bytes() == reference  # byte for byte: rows in design order
    assert (outs["dask"] / "runs.csv").read_bytes() == reference

    in_order = [spec.run_id for spec in iter_runs(load_experiment(SMALL))]
    expected = sorted(in_order)
    runs = load_results(outs["jobs1"])
    assert list(runs["run_id"]) == in_order and (runs["status"] == "ok").all()
    assert {"oom_kills", "psi_some_fraction", "guest_crashed"} <= set(runs.columns)

    series = {name: load_timeseries(out).sort_values(["run_id", "t"], ignore_index=True) for name, out in outs.items()}
    pd.testing.assert_frame_equal(series["jobs1"], series["jobs2"])
    pd.testing.assert_frame_equal(series["jobs1"], series["dask"])
    assert sorted(series["jobs1"]["run_id"].unique()) == expected

    executors = {name: json.loads((out / "metadata.json").read_text())["executor"] for name, out in outs.items()}
    assert executors == {
        "jobs1": "in-process (1 worker)",
        "jobs2": "local processes (2 workers)",
        "dask": "dask LocalCluster (2 worker processes, TLS on 127.0.0.1)",
    }
    dask_workers = set(pd.read_csv(outs["dask"] / "timing.csv")["worker"])
    assert dask_workers and all(worker.startswith("tls://127.0.0.1:") for worker in dask_workers)


@pytest.mark.slow
def test_an_existing_dask_scheduler_gives_the_same_runs(tmp_path):
    import logging

    from distributed import LocalCluster

    reference = tmp_path / "jobs1"
    invoke(str(SMALL), "--out", str(reference), "--quiet", "--no-report", "--jobs", "1")
    # the scheduler's HTTP server on a port of its own (":0"): under `-n auto` another test's may hold 8787
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
    ) as cluster:
        out = tmp_path / "tcp"
        invoke(str(SMALL), "--out", str(out), "--quiet", "--no-report", "--dask", cluster.scheduler_address)
    assert sorted_rows(out) == sorted_rows(reference)
    for name in ("runs.csv", "timeseries.parquet"):  # same seed, same bytes, whatever executes the runs
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    executor = json.loads((out / "metadata.json").read_text())["executor"]
    assert executor == f"dask scheduler {cluster.scheduler_address} (2 worker threads at start)"


@pytest.mark.slow
def test_csv_time_series_and_events(tmp_path):
    out = tmp_path / "out"
    invoke(
        str(SMALL),
        "--out",
        str(out),
        "--jobs",
        "2",
        "--quiet",
        "--no-report",
        "--events",
        "--timeseries",
        "csv",
    )
    names = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert {
        "runs.csv",
        "timing.csv",
        "timeseries.csv",
        "events.csv",
        "metadata.json",
        "experiment.toml",
    } <= names
    assert not any(name.endswith(".parquet") for name in names)
    ids = set(load_results(out)["run_id"])
    series = pd.read_csv(out / "timeseries.csv", dtype={"run_id": str})
    assert set(series["run_id"]) == ids
    assert_each_series_once(series)
    events = load_events(out)
    assert set(events.columns) >= {"run_id", "t", "kind", "block", "detail"}
    assert set(events["run_id"]) <= ids and len(events) > 0
    assert (out / "experiment.toml").read_text() == SMALL.read_text()


# Enough runs that a one-second commit window never holds the whole remaining batch.  The runner commits at most
# once a second (FlushPolicy.max_age_s) and each kill comes at its batch's first commit, about 16 runs here since
# the runs got faster (~45 ms each).  At 48 runs the resumed batch once committed all that was left in its first
# commit, and CI found it alive with every row written; at 144, two kills leave ~110 to do.
CRASH_EXPERIMENT = """\
name = "crash"
replications = 12
seed = 11
zip = [["driver.name", "host.controller"]]
[base]
duration = "16h"
sample_interval = "60s"
onlining.agent = "udev"
[factors]
memmap.strategy = ["kmalloc", "altmap", "subrange-hint"]
driver.name = ["hyperv", "xen"]
host.controller = ["hyperv-buffer", "mom"]
onlining.delay = [0, 30]
"""


@pytest.mark.slow
def test_sigkill_of_the_whole_batch_then_resume_keeps_every_run_exactly_once(tmp_path):
    experiment = tmp_path / "crash.toml"
    experiment.write_text(CRASH_EXPERIMENT)
    out = tmp_path / "out"
    runs_csv = out / "runs.csv"
    command = [
        *balloonsim_command(),
        "run",
        str(experiment),
        "--out",
        str(out),
        "--jobs",
        "2",
        "--quiet",
        "--no-report",
    ]
    expected = Counter(spec.run_id for spec in iter_runs(load_experiment(experiment)))
    total = sum(expected.values())

    for kill in range(2):
        threshold = data_rows(runs_csv) + 3
        log = open(tmp_path / f"batch{kill}.log", "w")
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            env=subprocess_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until(
                lambda proc=proc, threshold=threshold: data_rows(runs_csv) >= threshold or proc.poll() is not None,
                120,
                "rows",
            )
            assert proc.poll() is None, f"the batch ended before it could be killed: {proc.returncode}"
            assert data_rows(runs_csv) < total
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # the runner and every worker process, mid-write or not
            proc.wait()
            log.close()
        assert proc.returncode == -signal.SIGKILL

    done = subprocess.run(command, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"crash: {total} runs: {total} ok" in done.stdout

    lines = runs_csv.read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(",")[: len(header)], strict=False)) for line in lines[1:]]
    assert Counter(row["run_id"] for row in rows) == expected  # every run, exactly once
    assert {row["status"] for row in rows} == {"ok"}

    timing = pd.read_csv(out / "timing.csv", dtype={"run_id": str})
    assert Counter(timing["run_id"]) == expected
    series = pd.read_parquet(out / "timeseries.parquet")
    assert set(series["run_id"]) == set(expected)
    assert_each_series_once(series)
    assert not (out / "timeseries.parts").exists()
    assert not list(out.glob("*.tmp"))
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["status"] == "complete" and len(meta["sessions"]) == 3
    assert [s["status"] for s in meta["sessions"]] == ["running", "running", "complete"]
    assert [row["run_id"] for row in rows] == [spec.run_id for spec in iter_runs(load_experiment(experiment))]

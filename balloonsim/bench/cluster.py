"""A Dask cluster on this machine as a cluster's nodes start one: `dask scheduler` and single-threaded `dask
worker` processes from their command lines on 127.0.0.1, not a LocalCluster. What the scale-out test runs a
study against and what benchmarks/cluster_throughput.py times against `--jobs N`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path


def dask_command() -> list[str] | None:
    """The `dask` command of this interpreter's environment (the venv's bin), else from PATH; None without one."""
    exe = Path(sys.executable).parent / "dask"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("dask")
    return [found] if found else None


def start_cluster(
    workers: int, workdir: Path, env: Mapping[str, str] | None = None, timeout: float = 120.0
) -> tuple[str, list[subprocess.Popen]]:
    """A scheduler on a free port and `workers` workers, each started from its command line in `workdir`;
    returns the scheduler's address once every worker has joined, and the processes (scheduler first) for
    `stop_cluster`. RuntimeError when a process exits or the cluster is not up within `timeout` seconds; the
    processes started so far are stopped then."""
    import distributed

    dask = dask_command()
    if dask is None:
        raise RuntimeError("the `dask` command is not installed")
    scheduler_file = workdir / "scheduler.json"
    start = {"cwd": workdir, "env": dict(env) if env is not None else None}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [
        subprocess.Popen(
            [*dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
            + ["--scheduler-file", str(scheduler_file)],
            **start,
            **quiet,
        )
    ]
    try:
        address = _scheduler_address(scheduler_file, procs, time.monotonic() + timeout)
        for _ in range(workers):
            procs.append(
                subprocess.Popen(
                    [*dask, "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-dashboard"],
                    **start,
                    **quiet,
                )
            )
        with distributed.Client(address, timeout="30s") as client:
            client.wait_for_workers(workers, timeout=timeout)
    except BaseException:
        stop_cluster(procs)
        raise
    return address, procs


def _scheduler_address(scheduler_file: Path, procs: list[subprocess.Popen], deadline: float) -> str:
    while True:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{' '.join(map(str, proc.args))} exited with {proc.returncode}")
        try:
            return json.loads(scheduler_file.read_text())["address"]
        except (OSError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the scheduler did not write its address in time")
        time.sleep(0.1)


def stop_cluster(procs: list[subprocess.Popen]) -> None:
    """Ask every process to stop (workers first), then kill any still running after 30 s."""
    for proc in reversed(procs):
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

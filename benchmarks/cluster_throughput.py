"""A study's throughput on a real Dask cluster on this machine against `--jobs N`: the README's cluster figures.

    .venv/bin/python benchmarks/cluster_throughput.py [EXPERIMENT ...] [--workers 2] [--pairs 3] [--set K=V ...]

As on a cluster's nodes (balloonsim.bench.cluster, as the scale-out test does), `dask scheduler` and
`--workers` single-threaded `dask worker` processes are started from their command lines on 127.0.0.1. Then, per
experiment (default: the quickstart), whole `balloonsim run EXPERIMENT --quiet --no-report` commands: one
against the cluster first, on its own (its workers import balloonsim with their first chunk: what the first
study sent to a fresh cluster pays), then `--pairs` pairs of `--dask ADDRESS` and `--jobs N` (N = --workers),
their order alternating from pair to pair so that load hits both alike. Each command writes into a fresh
directory; every runs.csv is compared with the first command's, byte for byte. Printed: each mode's median,
range and runs per second, and the median of the pairs' wall ratios. Measures and prints; asserts nothing
(except that the results are the same).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from balloonsim.bench.cluster import start_cluster, stop_cluster

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parent


def _balloonsim() -> str:
    """`balloonsim` from this interpreter's environment (the venv's bin), else from PATH."""
    exe = Path(sys.executable).parent / "balloonsim"
    found = str(exe) if exe.exists() else shutil.which("balloonsim")
    if found is None:
        sys.exit("cluster_throughput: the `balloonsim` command is not installed")
    return found


def run_command(experiment: Path, mode: list[str], overrides: list[str], out: Path) -> float:
    """Wall time of one whole `balloonsim run` command."""
    argv = [_balloonsim(), "run", str(experiment), "--out", str(out), "--quiet", "--no-report", *mode]
    for override in overrides:
        argv += ["--set", override]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=REPOSITORY, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"cluster_throughput: {' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return wall


def measure(experiment: Path, address: str, workers: int, pairs: int, overrides: list[str], tmp: Path) -> dict:
    """The first command against the cluster, then `pairs` alternating pairs; every runs.csv must be the first's."""
    remote, local = ["--dask", address], ["--jobs", str(workers)]
    walls: dict[str, list[float]] = {"dask": [], "jobs": []}
    outputs = iter(range(1 + 2 * pairs))
    reference: bytes | None = None

    def one(mode: list[str]) -> float:
        nonlocal reference
        out = tmp / f"{experiment.stem}-{next(outputs)}"
        wall = run_command(experiment, mode, overrides, out)
        data = (out / "runs.csv").read_bytes()
        if reference is None:
            reference = data
        elif data != reference:
            sys.exit(f"cluster_throughput: runs.csv of `{' '.join(mode)}` differs from the first command's")
        shutil.rmtree(out)
        return wall

    first = one(remote)
    runs = reference.count(b"\n") - 1 if reference is not None else 0
    for i in range(pairs):
        order = [("dask", remote), ("jobs", local)] if i % 2 == 0 else [("jobs", local), ("dask", remote)]
        for name, mode in order:
            walls[name].append(one(mode))
    ratios = [d / j for d, j in zip(walls["dask"], walls["jobs"], strict=True)]
    return {"experiment": experiment.name, "runs": runs, "first": first, "walls": walls, "ratios": ratios}


def report(result: dict, workers: int, address: str) -> None:
    runs = result["runs"]
    cluster = f"{workers} `dask worker` processes ({address})"
    print(f"\n{result['experiment']}: {runs} runs; {cluster} against --jobs {workers}")
    print(f"  first command against the fresh cluster (its workers import balloonsim): {result['first']:.2f} s")
    for mode, label in (("dask", f"--dask {address}"), ("jobs", f"--jobs {workers}")):
        w = result["walls"][mode]
        med = statistics.median(w)
        print(f"  {label:<34} median {med:6.2f} s  ({min(w):.2f}-{max(w):.2f})  {runs / med:6.1f} runs/s")
    r = result["ratios"]
    print(f"  wall ratio dask / jobs, per pair: median {statistics.median(r):.2f} (range {min(r):.2f}-{max(r):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiments", nargs="*", type=Path, default=[REPOSITORY / "experiments" / "quickstart.toml"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    load = os.getloadavg()
    print(
        f"cluster_throughput: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    with tempfile.TemporaryDirectory(prefix="balloonsim-cluster-") as name:
        tmp = Path(name)
        try:
            address, procs = start_cluster(args.workers, tmp)
        except RuntimeError as exc:
            sys.exit(f"cluster_throughput: {exc}")
        try:
            for experiment in args.experiments:
                result = measure(experiment.resolve(), address, args.workers, args.pairs, args.overrides, tmp)
                report(result, args.workers, address)
        finally:
            stop_cluster(procs)
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()

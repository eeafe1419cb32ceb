"""What the median's bootstrap interval costs as samples grow: time and memory of `median_ci` per sample size.

    .venv/bin/python benchmarks/profile_bootstrap.py [--sizes 10,400,2000,10000] [--repeats 3]
    .venv/bin/python benchmarks/profile_bootstrap.py --other /path/to/other/.venv/bin/python

summary.csv gives each metric of each group a percentile-bootstrap interval of its median (2000 resamples;
balloonsim.analysis.stats). A group's sample is its runs, so a study with many replications per design point
has large ones. Each size is measured in a fresh process: two metrics of that size (the second may reuse what
the first drew), their wall time and how far RSS peaked above the process's after its imports (Linux: the peak
is reset through /proc/self/clear_refs), and what was still held after. With --other, the same points run with
another checkout's interpreter, alternating point by point, and both print side by side; the intervals must be
equal.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

CHILD = """
import json, sys, time
from pathlib import Path
import numpy as np
from balloonsim.analysis.stats import median_ci
def status(key):
    return int(Path("/proc/self/status").read_text().split(key + ":")[1].split()[0])
n = int(sys.argv[1])
x = np.random.default_rng(1).exponential(3.0, n)
Path("/proc/self/clear_refs").write_text("5")
base = status("VmRSS")
started = time.perf_counter()
cis = [median_ci(x), median_ci(x + 1.0)]
wall = time.perf_counter() - started
print(json.dumps({"wall_s": wall, "peak_mib": (status("VmHWM") - base) / 1024,
                  "held_mib": (status("VmRSS") - base) / 1024, "cis": cis}))
"""


def point(python: str, n: int) -> dict:
    # from a neutral directory: `python -c` puts the working directory first on sys.path, and a checkout there
    # would shadow the one the interpreter has installed
    done = subprocess.run(
        [python, "-c", CHILD, str(n)], capture_output=True, text=True, check=True, cwd=tempfile.gettempdir()
    )
    return json.loads(done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,400,2000,10000", help="sample sizes, comma-separated")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--other", help="another checkout's Python, measured alternately")
    args = ap.parse_args()
    pythons = {"this": sys.executable, **({"other": args.other} if args.other else {})}
    print(f"median_ci of two metrics per size, fresh process each, best of {args.repeats}")
    for n in (int(s) for s in args.sizes.split(",")):
        runs: dict[str, list[dict]] = {name: [] for name in pythons}
        for _ in range(args.repeats):
            for name, python in pythons.items():
                runs[name].append(point(python, n))
        if args.other and runs["this"][0]["cis"] != runs["other"][0]["cis"]:
            raise SystemExit(f"n = {n}: the two checkouts give different intervals")
        cells = []
        for name, got in runs.items():
            wall = min(r["wall_s"] for r in got)
            peak = statistics.median(r["peak_mib"] for r in got)
            held = statistics.median(r["held_mib"] for r in got)
            cells.append(f"{name} {wall:.3f} s, peak +{peak:.0f} MiB, held +{held:.0f} MiB")
        print(f"n = {n:>6}: " + "; ".join(cells))


if __name__ == "__main__":
    main()

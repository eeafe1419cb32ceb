"""Does this host's speed hold still for a minute? Bare SimPy before and after the reference scenario, in one process.

    .venv/bin/python benchmarks/host_drift.py [--processes 3]

Each fresh process measures bare SimPy (best of 5), runs the reference scenario 5 times, takes the best of 5 more,
and measures bare SimPy again. On a quiet machine the two bare figures agree and the reference's best holds from
process to process; where they do not, the host changed speed in between, and a ratio of figures taken minutes
apart (the reference against bare SimPy, a scale row against another) moves with it, whatever the code does.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

CHILD = """
from balloonsim.bench.event_rate import bare_simpy, reference_run
def bare():
    return max(bare_simpy(200_000)["events_per_s"] for _ in range(5)) / 1e6
first = bare()
for _ in range(5):
    reference_run()
ref_ms = min(reference_run()["wall_s"] for _ in range(5)) * 1e3
print(f"bare SimPy {first:.2f} M events/s, reference best {ref_ms:.2f} ms, bare SimPy again {bare():.2f} M events/s")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--processes", type=int, default=3)
    args = ap.parse_args()
    for i in range(args.processes):
        out = subprocess.run([sys.executable, "-c", CHILD], check=True, capture_output=True, text=True).stdout
        print(f"process {i + 1}: {out.strip()}")


if __name__ == "__main__":
    main()

"""`python -m balloonsim.bench TASK-JSON`: one scale point, sweep or spin in this fresh process; JSON on stdout.

Each task imports only its own section: a scale point's peak RSS must be the hot-add's (the kernel model),
not the simulator's or pandas', which the sweeps and the spin load.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _child(task: dict[str, Any]) -> dict[str, Any]:
    kind = task["task"]
    if kind == "scale":
        from balloonsim.bench.scale import scale_point

        return scale_point(task["size"], task["strategy"], task["block"])
    if kind == "blocks":
        from balloonsim.bench.scale import blocks_point

        return blocks_point(task["size"], task["strategy"], budget_s=task["budget_s"])
    if kind == "cli_rss":
        from balloonsim.bench.scale import cli_peak_rss

        return cli_peak_rss(task["size"], task["strategy"])
    if kind == "spin":
        from balloonsim.bench.sweeps import spin_bare  # imports the simulator before the spin's clock starts

        return spin_bare(task["seconds"], task["start_at"])
    if kind == "sweep":
        from balloonsim.bench.sweep_point import sweep_point  # nothing of the runner before its clock starts

        return sweep_point(
            task["experiment"], task["jobs"], task["dask"], task["replications"], task["out"], task.get("report", False)
        )
    raise ValueError(f"unknown task {kind!r}")


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))

"""`python -m balloonsim.bench TASK-JSON`: one scale point, sweep or spin in this fresh process; JSON on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any

from balloonsim.bench.scale import scale_point
from balloonsim.bench.sweeps import spin_bare, sweep_point


def _child(task: dict[str, Any]) -> dict[str, Any]:
    kind = task["task"]
    if kind == "scale":
        return scale_point(task["size"], task["strategy"], task["block"])
    if kind == "spin":
        return spin_bare(task["seconds"], task["start_at"])
    if kind == "sweep":
        return sweep_point(task["experiment"], task["jobs"], task["dask"], task["replications"], task["out"])
    raise ValueError(f"unknown task {kind!r}")


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))

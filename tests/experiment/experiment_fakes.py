"""Small deterministic stand-ins for `balloonsim.simulate`, importable by worker processes.

They let the runner, store and executors be tested in milliseconds; end-to-end tests use the real simulator.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd


@dataclass
class FakeResult:
    metrics: dict[str, Any]
    timeseries: pd.DataFrame
    events: pd.DataFrame


def _unit(config: dict[str, Any], seed: int) -> float:
    text = repr(sorted(config.items())) + str(seed)
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def fake_run(config: dict[str, Any], seed: int) -> FakeResult:
    """Metrics and a 5-sample time series that depend only on (config, seed); `fail = true` raises."""
    knobs = config.get("fake", {})
    if knobs.get("sleep"):
        time.sleep(knobs["sleep"])
    if knobs.get("fail"):
        raise RuntimeError(f"injected failure\nfor seed {seed}")
    u = _unit(config, seed)
    metrics: dict[str, Any] = {
        "score": round(u * 100, 6),
        "blocks": int(u * 1000),
        "oom": u > 0.9,
        "label": "x",
    }
    if knobs.get("extra_metric"):
        metrics["extra"] = 1.5
    t = [float(i) for i in range(5)]
    series = pd.DataFrame({"t": t, "used": [u * i for i in range(5)]})
    events = pd.DataFrame({"t": [0.0, 1.0], "kind": ["add", "online"], "block": [1, 1], "detail": ["", "x"]})
    return FakeResult(metrics, series, events)


CALLS: list[int] = []


def counting_run(config: dict[str, Any], seed: int) -> FakeResult:
    """`fake_run` that remembers its seeds (in-process only, with jobs=1)."""
    CALLS.append(seed)
    return fake_run(config, seed)


def flaky_run(config: dict[str, Any], seed: int) -> FakeResult:
    """Fails every run whose seed is odd."""
    if seed % 2:
        raise ValueError(f"odd seed {seed}")
    return fake_run(config, seed)


def dying_run(config: dict[str, Any], seed: int) -> FakeResult:
    """Kills its worker process outright (as a segfault or the OOM killer would) when `fake.die` is set."""
    if config.get("fake", {}).get("die"):
        import os

        os._exit(3)
    return fake_run(config, seed)


def modules_run(config: dict[str, Any], seed: int) -> FakeResult:
    """`fake_run` plus whether the worker that ran it had Dask's `distributed` (or `dask`) imported by then."""
    import sys

    result = fake_run(config, seed)
    result.metrics["distributed_loaded"] = "distributed" in sys.modules or "dask" in sys.modules
    return result


def set_aside_run(config: dict[str, Any], seed: int) -> FakeResult:
    """`fake_run` plus whether the process that ran it had set objects aside from the garbage collector."""
    import gc

    result = fake_run(config, seed)
    result.metrics["set_aside"] = gc.get_freeze_count() > 0
    return result


def quiet_dask_run(config: dict[str, Any], seed: int) -> FakeResult:
    """`fake_run` plus whether the process that ran it had the settings `--dask local` gives its workers."""
    import dask

    from balloonsim.experiment.dask_local import QUIET_WORKERS

    result = fake_run(config, seed)
    result.metrics["quiet"] = all(dask.config.get(key) == value for key, value in QUIET_WORKERS.items())
    return result

"""What one run returns: its metrics row, its time series and its events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

TIMESERIES_COLUMNS = [
    "t",
    "memtotal_bytes",
    "memfree_bytes",
    "demand_bytes",
    "pagecache_bytes",
    "target_bytes",
    "blocks_added",
    "blocks_online",
    "stalled",
    "oom_kills",
]


@dataclass
class RunResult:
    metrics: dict[str, Any]
    timeseries: pd.DataFrame
    events: pd.DataFrame

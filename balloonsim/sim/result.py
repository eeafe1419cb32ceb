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
    "stalled",  # fraction of the sample interval in PSI memory SOME
    "oom_kills",
    "psi_some_avg10",  # /proc/pressure/memory averages at the sample, as fractions
    "psi_some_avg60",
    "psi_full_avg10",
    "psi_full_avg60",
    "swap_used_bytes",
    "swap_in_pages",  # pswpin so far
    "swap_out_pages",  # pswpout so far
]


@dataclass
class RunResult:
    metrics: dict[str, Any]
    timeseries: pd.DataFrame
    events: pd.DataFrame

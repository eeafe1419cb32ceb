"""What one run returns: its metrics row, its time series and its events, as DataFrames (`RunResult`) or as
the plain rows the simulation recorded (`RunRows`, for callers that store them without pandas)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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


@dataclass
class RunRows:
    """One run's results as recorded: rows of `timeseries_columns` and of `event_columns`. Building DataFrames
    costs about a tenth of a short run, so callers that only store the rows (an experiment's workers) take
    these; `frames()` gives the RunResult."""

    metrics: dict[str, Any]
    timeseries_columns: list[str]
    timeseries: list[tuple]
    event_columns: list[str]
    events: list[tuple]

    def frames(self) -> RunResult:
        import pandas as pd

        from balloonsim.sim.eventlog import events_frame

        series = pd.DataFrame(self.timeseries, columns=self.timeseries_columns)
        return RunResult(self.metrics, series, events_frame(self.events))

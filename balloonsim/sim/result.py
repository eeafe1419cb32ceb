"""What one run returns: its metrics row, its time series and its events.

`RunResult` gives the tables as DataFrames, built only when first read, so that a caller keeping only the metrics
(a benchmark) never pays for them. `RunRows` gives them as the simulation recorded them (the time series as
columns, the events as rows), for callers that store them without pandas, like an experiment's workers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from balloonsim.sim.recorder import TIMESERIES_COLUMNS, Samples

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["TIMESERIES_COLUMNS", "RunResult", "RunRows"]

Table: TypeAlias = "pd.DataFrame | Callable[[], pd.DataFrame]"


class RunResult:
    """`metrics` (a dict), `timeseries` and `events` (DataFrames). Either table may be given as a function that
    builds it: it is called once, when the attribute is first read."""

    __slots__ = ("metrics", "_timeseries", "_events")

    def __init__(self, metrics: dict[str, Any], timeseries: Table, events: Table) -> None:
        self.metrics = metrics
        self._timeseries = timeseries
        self._events = events

    @property
    def timeseries(self) -> pd.DataFrame:
        if callable(self._timeseries):
            self._timeseries = self._timeseries()
        return self._timeseries

    @timeseries.setter
    def timeseries(self, frame: pd.DataFrame) -> None:
        self._timeseries = frame

    @property
    def events(self) -> pd.DataFrame:
        if callable(self._events):
            self._events = self._events()
        return self._events

    @events.setter
    def events(self, frame: pd.DataFrame) -> None:
        self._events = frame

    def __getstate__(self) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
        return self.metrics, self.timeseries, self.events  # tables built before they leave the process

    def __setstate__(self, state: tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]) -> None:
        self.metrics, self._timeseries, self._events = state

    def __repr__(self) -> str:
        return f"RunResult(metrics={len(self.metrics)} columns)"


@dataclass
class RunRows:
    """One run's results as recorded: the time series' samples (run-length coded, `columns()` gives one numpy
    array per column of TIMESERIES_COLUMNS) and the events as rows of `event_columns`. Building DataFrames costs
    about a tenth of a short run, so callers that only store the tables take these; `frames()` gives the
    RunResult."""

    metrics: dict[str, Any]
    samples: Samples
    event_columns: list[str]
    events: list[tuple]

    def timeseries_columns(self) -> dict[str, np.ndarray]:
        return self.samples.columns()

    def frames(self) -> RunResult:
        from balloonsim.sim.eventlog import events_frame

        events = self.events
        return RunResult(self.metrics, self.samples.frame, lambda: events_frame(events))

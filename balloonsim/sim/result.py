"""What one run returns: its metrics row, its time series and its events.

The metrics are made when the run ends; the time series and the events only when first read, so that a caller
keeping only the metrics (a sweep without --events, a benchmark) never pays for DataFrames.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import pandas as pd

from balloonsim.sim.recorder import TIMESERIES_COLUMNS

__all__ = ["TIMESERIES_COLUMNS", "RunResult"]

Table: TypeAlias = pd.DataFrame | Callable[[], pd.DataFrame]


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
        if not isinstance(self._timeseries, pd.DataFrame):
            self._timeseries = self._timeseries()
        return self._timeseries

    @timeseries.setter
    def timeseries(self, frame: pd.DataFrame) -> None:
        self._timeseries = frame

    @property
    def events(self) -> pd.DataFrame:
        if not isinstance(self._events, pd.DataFrame):
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

"""The events of one run: hot-add requests, add_memory results, onlining, population, OOM kills."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ["t", "kind", "block", "detail"]


class EventLog:
    """Append-only rows; a DataFrame only at the end, so logging stays cheap in the event loop."""

    __slots__ = ("rows", "enabled", "counts")

    def __init__(self, enabled: bool = True):
        self.rows: list[tuple[float, str, int, str]] = []
        self.enabled = enabled
        self.counts: dict[str, int] = {}

    def log(self, t: float, kind: str, block: int = -1, detail: str = "") -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.enabled:
            self.rows.append((t, kind, block, detail))

    def frame(self) -> pd.DataFrame:
        return events_frame(self.rows)


def events_frame(rows: list[tuple[float, str, int, str]]) -> pd.DataFrame:
    """The rows as a DataFrame; pandas is imported here only, so that a run that hands back plain rows (an
    experiment's worker) never loads it."""
    import pandas as pd

    return pd.DataFrame(rows, columns=COLUMNS).astype({"t": "float64", "block": "int64"})

"""A run's table (time series, events) on its way from a worker to the results directory.

A worker turns the rows the simulation recorded into `Columns` (numpy arrays for numbers, lists for text): it
needs neither pandas nor pyarrow for that, and the arrays cross the process boundary as raw buffers. The runner,
which writes Parquet anyway, makes the Arrow table (`to_arrow`). A run function that returns DataFrames (a
stand-in for tests, or a user's own) has its frames converted as they are, in the runner.

The column types are those pandas infers for the same rows (ints int64, any float float64, bools bool, text
large_string), so the files do not depend on which path a run took.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class Columns:
    """Named columns of equal length: numpy arrays (numbers, bools) or lists (text and anything else)."""

    names: tuple[str, ...]
    arrays: tuple[Any, ...]
    num_rows: int

    @classmethod
    def from_rows(cls, names: Sequence[str], rows: Sequence[tuple]) -> Columns | None:
        """The rows transposed into columns; None for no rows."""
        if not rows:
            return None
        return cls(tuple(names), tuple(_array(values) for values in zip(*rows, strict=True)), len(rows))

    @classmethod
    def from_arrays(cls, columns: dict[str, np.ndarray]) -> Columns | None:
        """Columns already made (numpy arrays of one length); None for no rows."""
        n = len(next(iter(columns.values()), ()))
        return cls(tuple(columns), tuple(columns.values()), n) if n else None


def _array(values: tuple[Any, ...]) -> Any:
    """A column as numpy when it holds numbers or bools (ints with a float become float64, as in pandas);
    otherwise (text, None, objects) a list, for Arrow to infer in the runner."""
    if isinstance(values[0], str):
        return list(values)
    array = np.array(values)
    return array if array.dtype.kind in "bif" else list(values)


def to_arrow(rid: str, data: Any) -> pa.Table | None:
    """`Columns` or a DataFrame as an Arrow table with a leading `run_id` column; None when there is nothing."""
    import pyarrow as pa

    from balloonsim.experiment import arrow

    if data is None:
        return None
    if isinstance(data, Columns):
        arrays = [_arrow_array(a) for a in data.arrays]
        table = pa.Table.from_arrays(arrays, names=list(data.names))
    else:  # a DataFrame
        if len(data.columns) == 0:
            return None
        table = pa.Table.from_pandas(data, preserve_index=False).replace_schema_metadata(None)
    if table.num_rows == 0:
        return None
    return table.add_column(0, "run_id", arrow.repeated(rid, table.num_rows))


def _arrow_array(values: Any) -> pa.Array:
    """Numbers and text straight from their buffers (no pandas import); anything else as Arrow infers it."""
    import pyarrow as pa

    from balloonsim.experiment import arrow

    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        return arrow.numeric(values)
    if all(isinstance(v, str) for v in values):
        return arrow.strings(values, large=True)
    return pa.array(values)

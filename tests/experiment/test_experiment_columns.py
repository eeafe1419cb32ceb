"""A worker's `Columns` become the same Arrow tables the pandas path made: the files do not depend on the path."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pyarrow as pa

from balloonsim.experiment.columns import Columns, to_arrow
from balloonsim.sim.simulation import simulate_rows

SCENARIO = {
    "duration": "1h",
    "sample_interval": "10s",
    "driver": {"name": "hyperv"},
    "memmap": {"strategy": "kmalloc"},
    "onlining": {"agent": "udev"},
    "workload": {"name": "bursts"},
    "host": {"controller": "hyperv-buffer"},
}


def test_the_simulators_rows_give_the_tables_its_dataframes_give():
    rows = simulate_rows(SCENARIO, seed=3)
    frames = rows.frames()
    series = Columns.from_arrays(rows.timeseries_columns())
    events = Columns.from_rows(rows.event_columns, rows.events)
    assert series.num_rows > 300 and events.num_rows > 10
    for name, columns, frame in (("timeseries", series, frames.timeseries), ("events", events, frames.events)):
        shipped = pickle.loads(pickle.dumps(columns))  # as it crosses from a worker
        table = to_arrow("r1", shipped)
        assert table.equals(to_arrow("r1", frame)), name
        assert table.schema.names[0] == "run_id" and table.column("run_id").to_pylist() == ["r1"] * len(frame)


def test_column_types_follow_pandas_inference():
    rows = [(0, 1, 0.5, True, "a"), (5.0, 2, 1, False, "bb")]
    names = ["t", "n", "x", "flag", "text"]
    columns = Columns.from_rows(names, rows)
    assert [a.dtype for a in columns.arrays[:4]] == [np.float64, np.int64, np.float64, np.bool_]
    assert columns.arrays[4] == ["a", "bb"]
    table = to_arrow("r", columns)
    frame = pd.DataFrame(rows, columns=names)
    assert table.drop(["run_id"]).schema.types == pa.Table.from_pandas(frame, preserve_index=False).schema.types
    assert Columns.from_rows(names, []) is None and to_arrow("r", None) is None

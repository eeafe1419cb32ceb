"""The runner loads pyarrow only once it has a table to write, and merging parts of one kind of run never loads
`pyarrow.compute`: before the first runs are handed out the runner's imports are on the batch's critical path.

Each check runs in a fresh interpreter (the test process has loaded pyarrow for other tests) and reports what it
had loaded, with a control that loads it, so the checks can fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
from experiment_support import subprocess_env

OPEN_STORE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from balloonsim.experiment import experiment_from_dict
    from balloonsim.experiment.runner import run_experiment  # noqa: F401 - what `balloonsim run` imports
    from balloonsim.experiment.store import ResultStore
    loaded = {{"runner": "pyarrow" in sys.modules}}
    exp = experiment_from_dict({{"name": "lazy", "factors": {{"fake.k": [1, 2]}}}})
    store = ResultStore.open(Path({out!r}), exp)
    loaded["opened"] = "pyarrow" in sys.modules
    store.timeseries.write_part([])
    loaded["nothing_written"] = "pyarrow" in sys.modules
    from balloonsim.experiment.columns import Columns, to_arrow
    import numpy as np
    store.timeseries.write_part([to_arrow("r1", Columns.from_arrays({{"t": np.arange(3)}}))])
    loaded["part_written"] = "pyarrow" in sys.modules
    store.close("complete", {{}})
    print(json.dumps(loaded))
    """
)

MERGE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np
    from balloonsim.experiment.columns import Columns, to_arrow
    from balloonsim.experiment.parts import PartDataset
    dataset = PartDataset(Path({out!r}), "timeseries")
    for rid in ("a", "b"):
        columns = {{"t": np.arange(4, dtype=np.int64), "free": np.linspace(0, 1, 4), "up": np.ones(4, bool)}}
        dataset.write_part([to_arrow(rid, Columns.from_arrays(columns))])
    dataset.finalize()
    merged = "pyarrow.compute" in sys.modules
    # the control: parts whose column types differ are widened by a cast, which does load it
    other = PartDataset(Path({out!r}), "events")
    other.write_part([to_arrow("a", Columns.from_arrays({{"x": np.arange(2, dtype=np.int64)}}))])
    other.write_part([to_arrow("b", Columns.from_arrays({{"x": np.array([0.5, 1.5])}}))])
    other.finalize()
    print(json.dumps({{"merged": merged, "widened": "pyarrow.compute" in sys.modules}}))
    """
)


def _run(code: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_runner_loads_pyarrow_only_for_its_first_table(tmp_path: Path) -> None:
    loaded = _run(OPEN_STORE.format(out=str(tmp_path / "out")))
    assert loaded == {"runner": False, "opened": False, "nothing_written": False, "part_written": True}
    assert pq.read_table(tmp_path / "out" / "timeseries.parquet").column("run_id").to_pylist() == ["r1"] * 3


def test_merging_parts_of_one_schema_needs_no_compute_kernels(tmp_path: Path) -> None:
    loaded = _run(MERGE.format(out=str(tmp_path)))
    assert loaded == {"merged": False, "widened": True}
    merged = pq.read_table(tmp_path / "timeseries.parquet")
    assert merged.column("run_id").to_pylist() == ["a"] * 4 + ["b"] * 4
    assert merged.schema.field("up").type == "bool"
    widened = pq.read_table(tmp_path / "events.parquet")
    assert str(widened.schema.field("x").type) == "double" and widened.column("x").to_pylist() == [0.0, 1.0, 0.5, 1.5]

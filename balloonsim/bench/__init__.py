"""`balloonsim bench`: how fast and how big balloonsim runs, against SimPy's own limit in the same invocation.

    from balloonsim.bench import measure, format_table
    result = measure(quick=True, only=["bare", "reference"])
    print(format_table(result))

Sections (names for `only`), one module each: `bare` and `reference` (event_rate.py: SimPy's event rate alone
and the reference scenario's against it), `scale` (scale.py: hot-add of 16 GiB .. 16 TiB), `sweeps` (sweeps.py:
runs per second with one and two processes and Dask, the runner's memory). machine.py says where the figures
came from and how busy the host was; goals.py checks them against the tool's goals; tables.py prints them.
Nothing here asserts anything about time: it measures and reports.
"""

from __future__ import annotations

from balloonsim.bench.measure import measure
from balloonsim.bench.plan import SECTIONS, parse_only
from balloonsim.bench.tables import format_table

__all__ = ["SECTIONS", "format_table", "measure", "parse_only"]

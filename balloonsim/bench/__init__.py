"""`balloonsim bench`: how fast and how big balloonsim runs, against SimPy's own limit in the same invocation.

    from balloonsim.bench.suite import measure
    from balloonsim.bench.tables import format_table
    result = measure(quick=True, only=["bare", "reference"])
    print(format_table(result))

Sections (names for `only`), one module each: `bare` and `reference` (event_rate.py: SimPy's event rate alone
and the reference scenario's against it), `scale` (scale.py: hot-add of 16 GiB .. 16 TiB), `sweeps` (sweeps.py:
runs per second with one and two processes and Dask, the runner's memory). machine.py says where the figures
came from and how busy the host was; goals.py checks them against the tool's goals; tables.py prints them;
suite.py runs the sections in order. Nothing here asserts anything about time: it measures and reports.

This file imports nothing, so that `balloonsim bench --help` and the measuring child processes
(`python -m balloonsim.bench`) load only the modules they use.
"""

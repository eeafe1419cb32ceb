"""What the end of a batch and the start of a resume cost in a large batch: the merge of the staged time-series
parts, by how the parts are cut into row groups, and the count of each run's rows that a resume checks.

    .venv/bin/python benchmarks/profile_merge.py RESULTS_DIR [--parts 9] [--repeats 5]

RESULTS_DIR is a finished batch (e.g. `balloonsim run benchmarks/sweep-180.toml --set replications=40 --out
/tmp/s720`). Its timeseries.parquet is cut again into `--parts` parts of consecutive chunks, as a runner's flushes
would have staged them, each part holding its runs in the order two workers finished them (the odd chunks first),
and written twice: in row groups of ROW_GROUP_ROWS rows (how balloonsim writes a part) and as one row group per
part (Arrow's default of up to a million rows a group, how it wrote them before). Each layout is then merged
(`PartDataset.finalize`, in design order) in a fresh process, alternating, and the merge's wall time and the peak
of Arrow's memory pool during it are printed, best and median of the repeats. Both merges must give the same
bytes as the batch's own file.

Then the resume's count (`PartDataset.row_counts` of the batch's file: Arrow's value counts a row group at a time)
against how it counted before (every row's run id as a Python string, counted by collections.Counter), each in a
fresh process, alternating: wall time and how far RSS peaked above the process's after its imports (Linux: the
peak is reset through /proc/self/clear_refs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SYSTEM_POOL = {"ARROW_DEFAULT_MEMORY_POOL": "system"}  # as the runner has it (balloonsim.environ)
CHILD = """
import json, sys, time
from pathlib import Path
import pyarrow as pa
from balloonsim.experiment.parts import PartDataset
directory, order = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
data = PartDataset(directory, "timeseries")
pool = pa.default_memory_pool()
before = pool.bytes_allocated()
started = time.perf_counter()
data.finalize(order)
print(json.dumps({"wall_s": time.perf_counter() - started, "peak_mib": (pool.max_memory() - before) / 2**20}))
"""
COUNTS_CHILD = """
import collections, json, sys, time
from pathlib import Path
import pyarrow.compute, pyarrow.csv, pyarrow.parquet as pq
from balloonsim.experiment.parts import PartDataset
directory, how = Path(sys.argv[1]), sys.argv[2]
def status(key):
    return int(Path("/proc/self/status").read_text().split(key + ":")[1].split()[0])
Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here (Linux)
base = status("VmRSS")
started = time.perf_counter()
if how == "arrow":
    counts = PartDataset(directory, "timeseries").row_counts()
else:
    ids = pq.read_table(directory / "timeseries.parquet", columns=["run_id"]).column("run_id").to_pylist()
    counts = collections.Counter(str(v) for v in ids)
wall = time.perf_counter() - started
grown = (status("VmHWM") - base) / 1024
print(json.dumps({"wall_s": wall, "rss_mib": grown, "rows": sum(counts.values())}))
"""
COUNTING = {"Arrow, a row group at a time": "arrow", "Python strings (before)": "strings"}


def child(code: str, *args: object) -> dict:
    """Run `code` in a fresh interpreter with the runner's Arrow allocator; its one line of JSON."""
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True, text=True, check=True, env={**os.environ, **SYSTEM_POOL},
    )  # fmt: skip
    return json.loads(done.stdout)


def stage(source: Path, out: Path, parts: int, row_group_rows: int | None) -> None:
    """Cut `source` into `parts` parts under out/timeseries.parts, chunk pairs swapped (finished out of order)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(source)
    spans: dict[str, list[int]] = {}  # run id -> [first row, rows] (the merged file holds each run's rows together)
    for row, rid in enumerate(table.column("run_id").to_pylist()):
        spans.setdefault(rid, [row, 0])[1] += 1
    ids = list(spans)
    size = -(-len(ids) // parts)
    (out / "timeseries.parts").mkdir(parents=True)
    for n in range(parts):
        chunk = ids[n * size : (n + 1) * size]
        half = len(chunk) // 2
        finished = chunk[half:] + chunk[:half]  # the second worker's chunk came back first
        part = pa.concat_tables([table.slice(*spans[rid]) for rid in finished])
        kwargs = {"row_group_size": row_group_rows} if row_group_rows else {}
        pq.write_table(part, out / "timeseries.parts" / f"part-{n:06d}.parquet", **kwargs)


def main() -> None:
    from balloonsim.experiment.parts import ROW_GROUP_ROWS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--parts", type=int, default=9)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    source = args.results / "timeseries.parquet"
    import pyarrow.parquet as pq

    order = list(dict.fromkeys(pq.read_table(source, columns=["run_id"]).column("run_id").to_pylist()))
    layouts = {f"row groups of {ROW_GROUP_ROWS} rows": ROW_GROUP_ROWS, "one row group per part": None}
    figures: dict[str, list[dict[str, float]]] = {name: [] for name in layouts}
    with tempfile.TemporaryDirectory() as tmp:
        order_file = Path(tmp) / "order.json"
        order_file.write_text(json.dumps(order))
        staged = {}
        for name, rows in layouts.items():
            staged[name] = Path(tmp) / f"staged-{rows or 'whole'}"
            stage(source, staged[name], args.parts, rows)
        for _ in range(args.repeats):
            for name in layouts:
                work = Path(tmp) / "work"
                shutil.rmtree(work, ignore_errors=True)
                shutil.copytree(staged[name], work)
                figures[name].append(child(CHILD, work, order_file))
                if (work / "timeseries.parquet").read_bytes() != source.read_bytes():
                    raise SystemExit(f"{name}: the merge is not the batch's own file")
    print(f"{len(order)} runs, {pq.ParquetFile(source).metadata.num_rows:,} rows, {args.parts} parts, "
          f"{args.repeats} merges of each layout, alternating (both give the batch's own bytes)")  # fmt: skip
    for name, runs in figures.items():
        wall = [r["wall_s"] for r in runs]
        peak = [r["peak_mib"] for r in runs]
        print(f"{name:>30}: merge {min(wall):.3f} s best, {statistics.median(wall):.3f} s median; "
              f"Arrow peak {min(peak):.1f} MiB best, {statistics.median(peak):.1f} MiB median")  # fmt: skip
    counted: dict[str, list[dict[str, float]]] = {name: [] for name in COUNTING}
    for _ in range(args.repeats):
        for name, how in COUNTING.items():
            counted[name].append(child(COUNTS_CHILD, args.results, how))
    print("the rows of each run counted, as a resume does:")
    for name, runs in counted.items():
        wall = [r["wall_s"] for r in runs]
        grown = [r["rss_mib"] for r in runs]
        print(f"{name:>30}: {min(wall):.3f} s best, {statistics.median(wall):.3f} s median; "
              f"peak RSS +{min(grown):.0f} MiB best, +{statistics.median(grown):.0f} MiB median "
              f"({runs[0]['rows']:,} rows)")  # fmt: skip


if __name__ == "__main__":
    main()

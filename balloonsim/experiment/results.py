"""Reading a results directory back into pandas, each run exactly once, even while a batch is running.

Readers apply the same rules as resume does: whole lines only, the last `ok` row of a run wins over failed
ones, and staged table parts count only for runs committed to runs.csv.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from balloonsim.errors import UserError
from balloonsim.experiment.csvlog import complete_lines, parse_line
from balloonsim.experiment.parts import FORMATS, PartDataset, concat
from balloonsim.experiment.store import RUNS, TIMING, read_metadata

_TEXT_COLUMNS = {"run_id": str, "status": str, "error": str, "worker": str}


def _latest_rows(path: Path) -> str:
    """CSV text of `path` keeping, per run_id, the last ok row (or the last row when none is ok)."""
    lines = complete_lines(path)
    header_line = next(lines, None)
    if header_line is None:
        return ""
    header = parse_line(header_line)
    has_status = "status" in header
    chosen: dict[str, tuple[bool, str]] = {}
    for line in lines:
        cells = parse_line(line)
        if len(cells) != len(header):
            continue
        row = dict(zip(header, cells, strict=True))
        ok = row["status"] == "ok" if has_status else True
        previous = chosen.get(row["run_id"])
        if previous is None or ok or not previous[0]:
            chosen[row["run_id"]] = (ok, line)
    return header_line + "".join(line for _, line in chosen.values())


def _read(path: Path) -> pd.DataFrame:
    text = _latest_rows(path)
    if not text:
        return pd.DataFrame()
    header = parse_line(text.split("\n", 1)[0])
    dtypes = {col: kind for col, kind in _TEXT_COLUMNS.items() if col in header}
    frame = pd.read_csv(io.StringIO(text), dtype=dtypes, keep_default_na=False, na_values=[""])
    for col in ("error",):
        if col in frame:
            frame[col] = frame[col].fillna("")
    return frame


def _check(directory: str | Path) -> Path:
    path = Path(directory)
    if read_metadata(path) is None or not (path / RUNS).exists():
        raise UserError(f"{path}: not a balloonsim results directory (no metadata.json / runs.csv)")
    return path


def load_results(directory: str | Path, timing: bool = False) -> pd.DataFrame:
    """runs.csv as a DataFrame, one row per run (with timing.csv's columns when `timing`)."""
    path = _check(directory)
    runs = _read(path / RUNS)
    if timing and (path / TIMING).exists():
        runs = runs.merge(_read(path / TIMING), on="run_id", how="left")
    return runs


def _load_table(directory: str | Path, name: str) -> pd.DataFrame:
    path = _check(directory)
    meta = read_metadata(path) or {}
    fmt = meta.get("options", {}).get("timeseries", "parquet")
    dataset = PartDataset(path, name, fmt if fmt in FORMATS else "parquet")
    runs = load_results(path)
    committed = set(runs.loc[runs["status"] == "ok", "run_id"]) if len(runs) else set()
    tables = [t for t in dataset.iter_tables(committed) if t.num_rows]
    if not tables:
        return pd.DataFrame({"run_id": pd.Series([], dtype=str)})
    return concat(tables).to_pandas()


def load_timeseries(directory: str | Path) -> pd.DataFrame:
    """All runs' sampled time series, with a `run_id` column."""
    return _load_table(directory, "timeseries")


def load_events(directory: str | Path) -> pd.DataFrame:
    """All runs' event logs (recorded with --events), with a `run_id` column."""
    return _load_table(directory, "events")

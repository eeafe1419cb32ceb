"""Read a results directory (the runner's contract) into one object the analysis steps share.

Everything downstream works on successful runs only; failed runs are kept aside so the report can count them.
Survival first: a guest that died (a survival metric such as guest_crashed is 1) counts in the survival
metrics, but its other metrics are blanked in `Results.runs` (they stop at the death and would flatter or
punish it); `Results.raw` keeps them for the time lines.
Factor levels that are tables are read whichever way runs.csv holds them: as canonical JSON in one column, as a
readable label column, or expanded into one column per key (`driver.name`, `driver.request_offset` in bytes);
each becomes one factor column holding the level's label (labels.py), so summary.csv, comparisons.csv, the
report and the figures all spell a level the same way. Booleans are labelled too; numbers stay numbers.
Broken or missing files raise UserError naming the file, because a stack trace helps nobody here.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from balloonsim.analysis.labels import design_levels, design_order, label_column, level_text, same_level
from balloonsim.analysis.metrics import info
from balloonsim.errors import UserError

DEFAULT_BY = "memmap.strategy"
# Columns of runs.csv that are neither factors nor metrics.
RESERVED = ("run_id", "index", "replicate", "seed", "status", "error")
REQUIRED = ("run_id", "status")
# Metrics the analysis computes from others: name -> (numerator, denominator).
DERIVED = {"blocks_removable_fraction": ("blocks_removable_end", "blocks_added_end")}


@dataclass
class Results:
    """One results directory: successful runs, failed runs, metadata, and where the time series live."""

    path: Path
    runs: pd.DataFrame  # successful runs; a dead guest's non-survival metrics blanked (NaN)
    failed: pd.DataFrame
    metadata: dict
    factors: list[str]
    metrics: list[str]  # numeric metric columns (derived ones included): what is analysed
    experiment: dict = field(default_factory=dict)
    design: dict[str, list] = field(default_factory=dict)  # factor -> levels as the experiment lists them
    raw: pd.DataFrame | None = None  # successful runs as measured, dead guests' metrics included
    columns: list[str] = field(default_factory=list)  # every metric column of runs.csv, text ones included

    @property
    def name(self) -> str:
        return str(self.metadata.get("experiment") or self.path.name)

    @property
    def question(self) -> str:
        return str(_spec_value(self, "question") or "").strip()

    @property
    def primary(self) -> list[str]:
        """The experiment's primary metrics that these runs have (checked at load)."""
        value = _spec_value(self, "primary")
        return [m for m in value if m in self.metrics] if isinstance(value, list) else []

    @cached_property
    def alive(self) -> pd.Series:
        """Per successful run: did the guest survive (no survival metric is 1)?"""
        table = self.raw if self.raw is not None else self.runs
        dead = pd.Series(False, index=table.index)
        for m in self.metrics:
            if info(m).survival and info(m).unit == "rate":  # guest_crashed; crash_time_s only says when
                dead |= table[m].fillna(0) > 0
        return ~dead

    def levels(self, factor: str) -> list:
        """Levels in a stable order: numbers ascending, anything else in the experiment's design order (levels
        the design does not list follow in order of first appearance)."""
        values = self.runs[factor]
        uniq = list(pd.unique(values.dropna()))
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            uniq = sorted(uniq)
        else:
            order = design_order(factor, self.design.get(factor))
            uniq.sort(key=lambda v: order.get(level_text(factor, v), len(order)))
        if values.isna().any():
            uniq.append(np.nan)
        return uniq

    @cached_property
    def varying_factors(self) -> list[str]:
        """Factors with more than one level among the successful runs (a single level is not an axis)."""
        return [f for f in self.factors if self.runs[f].nunique(dropna=False) > 1]

    @cached_property
    def aliases(self) -> dict[str, str]:
        """Factor -> the factor whose level fixes its level (a `zip` design): it adds no information.

        A zip may repeat a level (one host for two drivers), so one factor of the group fixes the other without
        the reverse; the factor with more levels (the earlier one of two with as many) is the root, and every
        factor it fixes is its alias."""
        text = self.runs[self.varying_factors].astype(str)
        counts = text.nunique()
        order = sorted(self.varying_factors, key=lambda f: (-counts[f], self.varying_factors.index(f)))
        out: dict[str, str] = {}
        roots: list[str] = []
        for factor in order:
            # a root fixing this factor fixes it through any alias too, so the roots are enough to look at
            root = next((r for r in roots if text[[r, factor]].drop_duplicates()[r].is_unique), None)
            if root is None:
                roots.append(factor)
            else:
                out[factor] = root
        return out

    @cached_property
    def independent_factors(self) -> list[str]:
        """Varying factors without the ones that merely repeat another (axes, facets and regime names)."""
        return [f for f in self.varying_factors if f not in self.aliases]

    def other_factors(self, by: str | None, *exclude: str | None) -> list[str]:
        """Independent varying factors other than `by`, `exclude` and whatever varies together with them."""
        tied: set[str] = set()
        for f in (by, *exclude):
            if f is not None:
                tied |= self.alias_group(f)
        return [f for f in self.independent_factors if f not in tied]

    def alias_group(self, factor: str) -> set[str]:
        """The factor and every factor aliased with it."""
        root = self.aliases.get(factor, factor)
        return {root} | {f for f, r in self.aliases.items() if r == root}

    def resolve_by(self, by: str | None) -> str | None:
        """The factor strategies are compared along.

        An explicit --by must exist; else the experiment's `compare` key, else the memmap strategy, else the
        first varying factor, so that `finish` still produces a report for experiments that do not vary it.
        """
        if by is not None:
            if by not in self.factors:
                raise UserError(
                    f"{self.path / 'runs.csv'}: --by {by!r} is not a factor; factors are " + ", ".join(self.factors)
                )
            return by
        stated = _spec_value(self, "compare")
        if isinstance(stated, str) and stated in self.varying_factors:
            return stated
        if DEFAULT_BY in self.varying_factors:
            return DEFAULT_BY
        return self.varying_factors[0] if self.varying_factors else None

    def timeseries(self, run_ids: list[str]) -> pd.DataFrame | None:
        """Time series rows of the given runs, or None when the directory has none."""
        return _read_table(self.path, "timeseries", run_ids)

    def events(self, run_ids: list[str]) -> pd.DataFrame | None:
        """Event rows of the given runs, or None when no events were recorded."""
        return _read_table(self.path, "events", run_ids)

    def has_timeseries(self) -> bool:
        return _table_path(self.path, "timeseries") is not None


def load(path: str | Path) -> Results:
    """Load DIR/runs.csv and DIR/metadata.json; raise UserError naming the file if either is unusable."""
    root = Path(path)
    if not root.is_dir():
        raise UserError(f"{root}: no such results directory")
    runs_path = root / "runs.csv"
    meta_path = root / "metadata.json"
    metadata = _read_metadata(meta_path)
    table = _read_runs(runs_path)
    experiment = _read_experiment(root / "experiment.toml")
    design = design_levels(_resolved(metadata)) or design_levels(experiment)
    factors, parts = _table_factors(table, _listed_factors(metadata, meta_path), design)
    _check_factors(factors, table, meta_path, runs_path)
    for f in factors:
        table[f] = label_column(f, table[f], design.get(f))
    columns = _metric_columns(metadata, table, factors, parts)
    metrics = [m for m in columns if _is_numeric(table[m])]
    ok = table["status"].astype(str).str.strip().str.lower() == "ok"
    raw = table[ok].copy()
    if raw.empty:
        first = table["error"].dropna().astype(str).head(1).tolist() if "error" in table else []
        hint = f"; first error: {first[0]}" if first else ""
        raise UserError(f"{runs_path}: no successful runs ({len(table)} rows, none with status ok){hint}")
    for m in metrics:
        raw[m] = _numeric(raw[m])
    for name, (num, den) in DERIVED.items():
        if num in metrics and den in metrics and name not in raw:
            raw[name] = raw[num] / raw[den].where(raw[den] > 0)
            metrics.insert(metrics.index(num) + 1, name)
    if "index" in raw:
        raw = raw.sort_values("index", kind="stable")
    raw = raw.reset_index(drop=True)
    results = Results(
        path=root,
        runs=raw,
        failed=table[~ok].reset_index(drop=True),
        metadata=metadata,
        factors=factors,
        metrics=metrics,
        experiment=experiment,
        design={f: design[f] for f in factors if f in design},
        raw=raw,
        columns=columns,
    )
    results.runs = _survivors_only(raw, metrics, results.alive)
    _check_primary(results)
    return results


def data_mtime(root: Path) -> float:
    """When the data of a results directory last changed: runs.csv, metadata.json, experiment.toml, the time
    series, the events. CSVs and figures older than this are stale."""
    data = [root / name for name in ("runs.csv", "metadata.json", "experiment.toml")]
    data += [p for p in root.iterdir() if p.name.startswith(("timeseries.", "events."))]
    return max((p.stat().st_mtime for p in data if p.exists()), default=0.0)


def _survivors_only(raw: pd.DataFrame, metrics: list[str], alive: pd.Series) -> pd.DataFrame:
    """The runs with every non-survival metric of a dead guest blanked."""
    if alive.all():
        return raw
    runs = raw.copy()
    dead = ~alive.to_numpy()
    for m in metrics:
        if not info(m).survival:
            values = runs[m].to_numpy(dtype=float, copy=True)  # every metric is float (_numeric)
            values[dead] = np.nan
            runs[m] = values
    return runs


def _spec_value(results: Results, key: str):
    """A key of the experiment as run (metadata's resolved copy), else of the experiment.toml beside it."""
    resolved = _resolved(results.metadata)
    return resolved[key] if key in resolved else results.experiment.get(key)


def _check_primary(results: Results) -> None:
    value = _spec_value(results, "primary")
    if value is None:
        return
    where = results.path / ("metadata.json" if "primary" in _resolved(results.metadata) else "experiment.toml")
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise UserError(f"{where}: primary must be a list of metric names")
    unknown = [m for m in value if m not in results.metrics]
    if unknown:
        raise UserError(
            f"{where}: primary: {', '.join(repr(m) for m in unknown)} "
            f"{'is not a metric' if len(unknown) == 1 else 'are not metrics'} of these runs; metrics are "
            + ", ".join(results.metrics)
        )


def _listed_factors(metadata: dict, meta_path: Path) -> list[str]:
    factors = metadata.get("factors", [])
    if not isinstance(factors, list) or not all(isinstance(f, str) for f in factors):
        raise UserError(f"{meta_path}: 'factors' must be a list of column names")
    return list(factors)


def _table_factors(table: pd.DataFrame, listed: list[str], design: dict[str, list]) -> tuple[list[str], set[str]]:
    """(factor columns, columns that are keys of a table-valued factor).

    A table-valued factor (a level is a table, `driver = [{name = "hyperv", ...}]`) is one factor however
    runs.csv spells it: its own column (JSON or a label) is used as is; without one, the label column is
    built here from the expanded `driver.<key>` columns, matching each row to the design's level.
    """
    factors: list[str] = []
    parts: set[str] = set()
    tables = [f for f, levels in design.items() if any(isinstance(v, dict) for v in levels)]
    for f in listed:
        owner = next((t for t in tables if f.startswith(t + ".")), None)
        name = owner or f
        if name not in factors:
            factors.append(name)
    for t in tables:
        keys = [c for c in table.columns if c.startswith(t + ".")]
        parts.update(keys)
        if t not in factors and (t in table.columns or keys):
            factors.append(t)
        if t not in table.columns and keys:
            table[t] = _labels_from_keys(t, table[keys], design[t])
    return factors, parts


def _labels_from_keys(factor: str, keys: pd.DataFrame, design: list) -> pd.Series:
    """The design level of each row of expanded key columns, as its label (JSON order as a fallback)."""
    prefix = len(factor) + 1
    out = []
    cache: dict[tuple, str] = {}
    for row in keys.itertuples(index=False):
        values = {c[prefix:]: v for c, v in zip(keys.columns, row, strict=True) if not _missing(v)}
        key = tuple(sorted((k, str(v)) for k, v in values.items()))
        if key not in cache:
            match = next((d for d in design if isinstance(d, dict) and _matches(d, values)), None)
            cache[key] = level_text(factor, match if match is not None else values)
        out.append(cache[key])
    return pd.Series(out, index=keys.index, dtype=object)


def _matches(level: dict, values: dict) -> bool:
    return set(level) == set(values) and all(same_level(level[k], values[k]) for k in level)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value == ""


def _check_factors(factors: list[str], table: pd.DataFrame, meta_path: Path, runs_path: Path) -> None:
    absent = [f for f in factors if f not in table.columns]
    if absent:
        raise UserError(f"{runs_path}: factor column(s) {', '.join(absent)} listed in {meta_path.name} are missing")


def _read_metadata(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path}: missing; is this a results directory written by `balloonsim run`?")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def _read_runs(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise UserError(f"{path}: missing; is this a results directory written by `balloonsim run`?")
    try:
        table = pd.read_csv(path, dtype={"run_id": str})
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: empty file") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path}: not a readable CSV ({str(exc).strip()})") from None
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    return table


def _metric_columns(metadata: dict, table: pd.DataFrame, factors: list[str], parts: set[str]) -> list[str]:
    """Columns listed as metrics (every column that is no factor, key of one, or bookkeeping, without a
    list), text ones included: what metrics.csv describes."""
    listed = metadata.get("metrics")
    if isinstance(listed, list):
        candidates = [m for m in listed if isinstance(m, str) and m in table.columns]
    else:
        candidates = [c for c in table.columns if c not in RESERVED]
    return [m for m in candidates if m not in factors and m not in parts and m not in RESERVED]


def _is_numeric(col: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return True
    values = col.dropna().astype(str).str.strip().str.lower()
    return bool(len(values)) and values.isin(["true", "false", "0", "1"]).all()


def _numeric(col: pd.Series) -> pd.Series:
    """Floats; booleans (also written as True/False text) become 0/1."""
    if pd.api.types.is_bool_dtype(col):
        return col.astype(float)
    if pd.api.types.is_numeric_dtype(col):
        return col.astype(float)
    mapped = col.astype(str).str.strip().str.lower().map({"true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0})
    return mapped.astype(float)


def _resolved(metadata: dict) -> dict:
    """The experiment as the runner resolved it (with --set overrides), or {} for older metadata."""
    source = metadata.get("source")
    resolved = source.get("resolved") if isinstance(source, dict) else None
    return resolved if isinstance(resolved, dict) else {}


def _read_experiment(path: Path) -> dict:
    """The experiment file is descriptive only (design, replications); a broken one is not fatal."""
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}


def _table_path(root: Path, stem: str) -> Path | None:
    for candidate in (root / f"{stem}.parquet", root / f"{stem}.csv"):
        if candidate.exists():
            return candidate
    return None


def _read_table(root: Path, stem: str, run_ids: list[str]) -> pd.DataFrame | None:
    """Read only the rows of `run_ids`: time series of a large batch do not fit in memory."""
    path = _table_path(root, stem)
    if path is None:
        return None
    wanted = [str(r) for r in run_ids]
    if not wanted:
        return pd.DataFrame(columns=["run_id", "t"])
    try:
        if path.suffix == ".parquet" and path.is_dir():  # a dataset of Parquet files (another tool's layout)
            table = pd.read_parquet(path, filters=[("run_id", "in", wanted)])
        elif path.suffix == ".parquet":
            table = _read_parquet_runs(path, wanted)
        else:
            chunks = pd.read_csv(path, chunksize=200_000, dtype={"run_id": str})
            table = pd.concat([c[c["run_id"].isin(wanted)] for c in chunks], ignore_index=True)
    except Exception as exc:  # pyarrow and pandas raise many types for a broken file
        raise UserError(f"{path}: cannot read ({type(exc).__name__}: {str(exc).strip()[:200]})") from None
    if "run_id" not in table.columns or "t" not in table.columns:
        raise UserError(f"{path}: needs columns run_id and t")
    table["run_id"] = table["run_id"].astype(str)
    return table.sort_values(["run_id", "t"], kind="stable").reset_index(drop=True)


def _read_parquet_runs(path: Path, wanted: list[str]) -> pd.DataFrame:
    """The rows of the `wanted` runs, decoding only the row groups that hold one.

    `pd.read_parquet(filters=...)` decodes the whole file here: row groups hold runs in design order and run ids
    are hashes, so no group's min/max statistics rule a run out (for the time line of a 720-run sweep-180 batch,
    three runs, 97 MiB of Arrow memory). The run_id column is read first, one row group at a time, and only the
    groups that hold a wanted run are decoded. `Table.to_pandas` converts as pd.read_parquet does (pandas 2, or
    pandas 3 with pyarrow >= 19: pyproject.toml)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as parquet:
        if "run_id" not in parquet.schema_arrow.names:
            return parquet.read_row_groups([]).to_pandas()  # no run is there: the caller names the missing column
        runs = pa.array(wanted, pa.string())
        holding = [
            group
            for group in range(parquet.num_row_groups)
            if pc.any(pc.is_in(parquet.read_row_group(group, columns=["run_id"])["run_id"], value_set=runs)).as_py()
        ]
        table = parquet.read_row_groups(holding)
    return table.filter(pc.is_in(table.column("run_id"), value_set=runs)).to_pandas()

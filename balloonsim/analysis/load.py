"""Read a results directory (the runner's contract) into one object the analysis steps share.

Everything downstream works on successful runs only; failed runs are kept aside so the report can count them.
Factor levels that are tables (stored as JSON) or booleans are replaced by their label (labels.py) on reading,
so summary.csv, comparisons.csv, the report and the figures all spell a level the same way.
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

from balloonsim.analysis.labels import design_levels, design_order, label_column, level_text
from balloonsim.errors import UserError

DEFAULT_BY = "memmap.strategy"
# Columns of runs.csv that are neither factors nor metrics.
RESERVED = ("run_id", "index", "replicate", "seed", "status", "error")
REQUIRED = ("run_id", "status")


@dataclass
class Results:
    """One results directory: successful runs, failed runs, metadata, and where the time series live."""

    path: Path
    runs: pd.DataFrame
    failed: pd.DataFrame
    metadata: dict
    factors: list[str]
    metrics: list[str]
    experiment: dict = field(default_factory=dict)
    design: dict[str, list] = field(default_factory=dict)  # factor -> levels as the experiment lists them

    @property
    def name(self) -> str:
        return str(self.metadata.get("experiment") or self.path.name)

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
        """Factor -> the earlier factor it varies with one-to-one (a `zip` design): no new information."""
        out: dict[str, str] = {}
        text = self.runs[self.varying_factors].astype(str)
        for i, later in enumerate(self.varying_factors):
            for earlier in self.varying_factors[:i]:
                if earlier in out:
                    continue
                pairs = text[[earlier, later]].drop_duplicates()
                if pairs[earlier].is_unique and pairs[later].is_unique:
                    out[later] = earlier
                    break
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

        An explicit --by must exist; the default falls back to the first varying factor so that `finish`
        still produces a report for experiments that do not vary the memmap strategy.
        """
        if by is not None:
            if by not in self.factors:
                raise UserError(
                    f"{self.path / 'runs.csv'}: --by {by!r} is not a factor; factors are " + ", ".join(self.factors)
                )
            return by
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
    factors = _factors(metadata, table, meta_path, runs_path)
    experiment = _read_experiment(root / "experiment.toml")
    design = design_levels(_resolved(metadata)) or design_levels(experiment)
    for f in factors:
        table[f] = label_column(f, table[f], design.get(f))
    metrics = _metrics(metadata, table, factors)
    ok = table["status"].astype(str).str.strip().str.lower() == "ok"
    runs = table[ok].copy()
    if runs.empty:
        first = table["error"].dropna().astype(str).head(1).tolist() if "error" in table else []
        hint = f"; first error: {first[0]}" if first else ""
        raise UserError(f"{runs_path}: no successful runs ({len(table)} rows, none with status ok){hint}")
    for m in metrics:
        runs[m] = _numeric(runs[m])
    if "index" in runs:
        runs = runs.sort_values("index", kind="stable")
    return Results(
        path=root,
        runs=runs.reset_index(drop=True),
        failed=table[~ok].reset_index(drop=True),
        metadata=metadata,
        factors=factors,
        metrics=metrics,
        experiment=experiment,
        design={f: design[f] for f in factors if f in design},
    )


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


def _factors(metadata: dict, table: pd.DataFrame, meta_path: Path, runs_path: Path) -> list[str]:
    factors = metadata.get("factors", [])
    if not isinstance(factors, list) or not all(isinstance(f, str) for f in factors):
        raise UserError(f"{meta_path}: 'factors' must be a list of column names")
    absent = [f for f in factors if f not in table.columns]
    if absent:
        raise UserError(f"{runs_path}: factor column(s) {', '.join(absent)} listed in {meta_path.name} are missing")
    return list(factors)


def _metrics(metadata: dict, table: pd.DataFrame, factors: list[str]) -> list[str]:
    """Numeric columns listed as metrics; without a list, every numeric column that is not a factor."""
    listed = metadata.get("metrics")
    if isinstance(listed, list):
        candidates = [m for m in listed if isinstance(m, str) and m in table.columns]
    else:
        candidates = [c for c in table.columns if c not in RESERVED and c not in factors]
    return [m for m in candidates if m not in factors and _is_numeric(table[m])]


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
        if path.suffix == ".parquet":
            table = pd.read_parquet(path, filters=[("run_id", "in", wanted)])
        else:
            chunks = pd.read_csv(path, chunksize=200_000, dtype={"run_id": str})
            table = pd.concat([c[c["run_id"].isin(wanted)] for c in chunks], ignore_index=True)
    except Exception as exc:  # pyarrow and pandas raise many types for a broken file
        raise UserError(f"{path}: cannot read ({type(exc).__name__}: {str(exc).strip()[:200]})") from None
    if "run_id" not in table.columns or "t" not in table.columns:
        raise UserError(f"{path}: needs columns run_id and t")
    table["run_id"] = table["run_id"].astype(str)
    return table.sort_values(["run_id", "t"], kind="stable").reset_index(drop=True)

"""The result directory of one experiment: what is done already, and committing runs as they finish.

Layout of `results/<experiment>/`:

- `runs.csv`: one row per run: run_id, index, replicate, seed, status (ok|failed), error, each factor (dotted
  name), then each metric.  Deterministic: identical across executors once sorted by run_id.
- `timing.csv`: run_id, wall_time_s, worker: the nondeterministic columns, kept apart.
- `timeseries.parquet` (or `.csv`), `events.parquet` (or `.csv`, only with --events): per-run tables with a
  `run_id` column; staged in `*.parts/` while the batch runs (see `parts`).
- `metadata.json`: provenance, the experiment's digests, executor, factor and metric names, counts.
- `experiment.toml`: the experiment file as given.

Commit protocol, per flush of finished runs: table parts first, then timing rows, then runs.csv rows; a run is
done exactly when its `ok` row is in runs.csv.  Resume (`open` on an existing directory) repairs whatever a
crash left: torn lines, failed rows (to retry), duplicates, and parts or timing rows of uncommitted runs.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from balloonsim.errors import UserError
from balloonsim.experiment import provenance, tomlwrite
from balloonsim.experiment.csvlog import (
    CsvLog,
    complete_lines,
    format_line,
    parse_line,
    read_header,
    recover,
    write_atomically,
)
from balloonsim.experiment.design import RunSpec
from balloonsim.experiment.parts import PartDataset
from balloonsim.experiment.spec import RESULT_COLUMNS, Experiment
from balloonsim.experiment.worker import RunOutcome

RESULTS_FORMAT = "balloonsim-results/1"
FIXED_COLUMNS = list(RESULT_COLUMNS)
TIMING_COLUMNS = ["run_id", "wall_time_s", "worker"]
RUNS, TIMING, METADATA, EXPERIMENT_COPY = "runs.csv", "timing.csv", "metadata.json", "experiment.toml"
LOCK = ".lock"


@dataclass(frozen=True)
class StoreOptions:
    """Choices that must stay the same across resumes of one directory."""

    timeseries: str = "parquet"
    events: bool = False


@dataclass(frozen=True)
class FlushPolicy:
    """Batch finished runs into one part file and one write, but never hold them long or big."""

    max_runs: int = 256
    max_bytes: int = 64 << 20
    max_age_s: float = 1.0


@dataclass
class _Pending:
    rows: list[dict[str, Any]] = field(default_factory=list)
    timing: list[dict[str, Any]] = field(default_factory=list)
    timeseries: list[Any] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)
    nbytes: int = 0
    since: float | None = None


def read_metadata(directory: Path) -> dict[str, Any] | None:
    """The directory's metadata when it is a balloonsim results directory, else None."""
    try:
        meta = json.loads((directory / METADATA).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == RESULTS_FORMAT else None


def check_target(directory: Path, exp: Experiment, options: StoreOptions, force: bool) -> str:
    """'new', 'resume' or 'replace' for writing `exp` into `directory`; raises UserError if refused.

    Reads only: nothing is created or changed here.
    """
    if not directory.exists():
        return "new"
    if not directory.is_dir():
        raise UserError(f"{directory} exists and is not a directory")
    if not any(p.name != LOCK for p in directory.iterdir()):
        return "new"
    meta = read_metadata(directory)
    if meta is None:
        raise UserError(f"{directory} is not empty and holds no balloonsim results; choose another --out")
    if force:
        return "replace"
    old = meta.get("source", {})
    if old.get("design_sha256") != exp.design_sha256:
        raise UserError(
            f"{directory} holds results of a different experiment ({meta.get('experiment')!r}, design "
            f"{str(old.get('design_sha256'))[:12]} vs {exp.design_sha256[:12]} now); "
            "use --force to replace them or --out to write elsewhere"
        )
    recorded = StoreOptions(**meta.get("options", {}))
    if recorded != options:
        raise UserError(
            f"{directory} was written with --timeseries {recorded.timeseries}"
            f"{' --events' if recorded.events else ''}; resume with the same options, "
            "or use --force to start over"
        )
    return "resume"


def ok_run_ids(directory: Path) -> set[str]:
    """Run ids with an `ok` row in runs.csv, read-only (tolerates a torn last line)."""
    path = directory / RUNS
    if not path.exists():
        return set()
    lines = complete_lines(path)
    header = next(lines, None)
    if header is None:
        return set()
    columns = parse_line(header)
    ids = set()
    for line in lines:
        cells = parse_line(line)
        if len(cells) == len(columns):
            row = dict(zip(columns, cells, strict=True))
            if row["status"] == "ok":
                ids.add(row["run_id"])
    return ids


class ResultStore:
    """An open results directory: `done` run ids, `add` finished runs, `close` to finalize."""

    def __init__(self, directory: Path, exp: Experiment, options: StoreOptions, policy: FlushPolicy):
        self.directory = directory
        self.experiment = exp
        self.options = options
        self.policy = policy
        self.done: set[str] = set()
        self.ok_count = 0
        self.failed_count = 0
        self.timeseries = PartDataset(directory, "timeseries", options.timeseries)
        self.events = PartDataset(directory, "events", options.timeseries) if options.events else None
        self._pending = _Pending()
        self._runs: CsvLog | None = None
        self._timing: CsvLog | None = None
        self._metadata: dict[str, Any] = {}
        self._metric_columns: dict[str, str] = {}
        self._schemas: list[list[str]] = []
        self._schemas_changed = False
        self._lock: int | None = None

    # ---- opening ------------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: Path,
        exp: Experiment,
        options: StoreOptions | None = None,
        *,
        force: bool = False,
        executor: str = "",
        policy: FlushPolicy | None = None,
    ) -> ResultStore:
        options = options or StoreOptions()
        check_target(directory, exp, options, force)  # refuse before creating anything
        directory.mkdir(parents=True, exist_ok=True)
        lock = _lock(directory)
        try:
            mode = check_target(directory, exp, options, force)  # again, now that no one else can write
            if mode == "replace":
                for path in directory.iterdir():
                    if path.name != LOCK:
                        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            store = cls(directory, exp, options, policy or FlushPolicy())
            store._lock = lock
            previous = read_metadata(directory) if mode == "resume" else None
            store._start_metadata(previous, executor)
            store._recover()
            store._write_experiment_copy()
        except BaseException:
            os.close(lock)
            raise
        return store

    def _recover(self) -> None:
        header, self.done = recover(self.directory / RUNS, "run_id", lambda row: row.get("status") == "ok")
        recover(self.directory / TIMING, "run_id", lambda row: row.get("run_id") in self.done)
        for dataset in (self.timeseries, self.events):
            if dataset is not None:
                dataset.recover(self.done)
        factor_columns = list(self.experiment.factors)
        columns = FIXED_COLUMNS + factor_columns
        if header is not None:
            if header[: len(columns)] != columns:
                raise UserError(f"{self.directory / RUNS}: columns do not match the experiment; use --force")
            columns = header
        self._runs = CsvLog(self.directory / RUNS, columns)
        self._timing = CsvLog(self.directory / TIMING, TIMING_COLUMNS)
        fixed = set(FIXED_COLUMNS + factor_columns)
        for column in columns[len(FIXED_COLUMNS) + len(factor_columns) :]:
            name = column[len("metric.") :] if column.startswith("metric.") and column[7:] in fixed else column
            self._metric_columns[name] = column

    def _write_experiment_copy(self) -> None:
        exp = self.experiment
        text = exp.source_text
        if text is None:
            text = tomlwrite.dumps(exp.model_dump(mode="json"))
        write_atomically(self.directory / EXPERIMENT_COPY, [text])

    # ---- metadata -----------------------------------------------------------------------------------------

    def _start_metadata(self, previous: dict[str, Any] | None, executor: str) -> None:
        exp = self.experiment
        sessions = list(previous.get("sessions", [])) if previous else []
        sessions.append({"started_at": provenance.now(), "ended_at": None, "status": "running", "executor": executor})
        self._schemas = [list(schema) for schema in (previous or {}).get("metric_schemas", [])]
        self._metadata = {
            "format": RESULTS_FORMAT,
            "experiment": exp.name,
            "description": exp.description,
            "source": {
                "file": exp.source_path,
                "file_sha256": exp.source_sha256,
                "design_sha256": exp.design_sha256,
                "overrides": list(exp.overrides),
                "resolved": exp.model_dump(mode="json"),
            },
            "options": {"timeseries": self.options.timeseries, "events": self.options.events},
            "environment": provenance.environment(),
            "executor": executor,
            "started_at": previous.get("started_at") if previous else sessions[-1]["started_at"],
            "ended_at": None,
            "status": "running",
            "factors": list(exp.factors),
            "metrics": [],
            "metric_schemas": self._schemas,
            "counts": {},
            "sessions": sessions,
        }
        self._save_metadata()

    def _save_metadata(self) -> None:
        write_atomically(self.directory / METADATA, [json.dumps(self._metadata, indent=2, default=str) + "\n"])

    # ---- adding runs --------------------------------------------------------------------------------------

    def add(self, spec: RunSpec, outcome: RunOutcome) -> None:
        """Buffer a finished run; it is committed by the next `flush` (which `due` says when to call)."""
        row: dict[str, Any] = {
            "run_id": spec.run_id,
            "index": spec.index,
            "replicate": spec.replicate,
            "seed": spec.seed,
            "status": "ok" if outcome.ok else "failed",
            "error": outcome.error,
        }
        for name in self.experiment.factors:
            row[name] = spec.factors[name]
        schema = [self._metric_column(name) for name in outcome.metrics]
        row.update(zip(schema, outcome.metrics.values(), strict=True))
        if schema and schema not in self._schemas:
            self._schemas.append(schema)
            self._schemas_changed = True
        pending = self._pending
        pending.rows.append(row)
        pending.timing.append(
            {"run_id": spec.run_id, "wall_time_s": round(outcome.wall_time_s, 6), "worker": outcome.worker}
        )
        if outcome.ok:
            for table, bucket in ((outcome.timeseries, pending.timeseries), (outcome.events, pending.events)):
                if table is not None:
                    bucket.append(table)
                    pending.nbytes += table.nbytes
        if pending.since is None:
            pending.since = time.monotonic()

    def _metric_column(self, name: str) -> str:
        column = self._metric_columns.get(name)
        if column is None:
            taken = set(FIXED_COLUMNS) | set(self.experiment.factors)
            column = f"metric.{name}" if name in taken else name
            self._metric_columns[name] = column
        return column

    def due(self) -> bool:
        p, policy = self._pending, self.policy
        if p.since is None:
            return False
        return (
            len(p.rows) >= policy.max_runs
            or p.nbytes >= policy.max_bytes
            or time.monotonic() - p.since >= policy.max_age_s
        )

    def seconds_until_due(self) -> float | None:
        """How long the runner may wait for more results before it should flush (None: nothing buffered)."""
        if self._pending.since is None:
            return None
        return max(0.0, self.policy.max_age_s - (time.monotonic() - self._pending.since))

    def flush(self) -> None:
        """Commit the buffered runs: table parts, then timing rows, then runs.csv rows."""
        pending, self._pending = self._pending, _Pending()
        if not pending.rows:
            return
        self.timeseries.write_part(pending.timeseries)
        if self.events is not None:
            self.events.write_part(pending.events)
        assert self._runs is not None and self._timing is not None
        if self._schemas_changed:
            self._save_metadata()  # the column order must survive a crash of this session
            self._schemas_changed = False
        self._timing.append(pending.timing)
        self._runs.add_columns([c for row in pending.rows for c in row if c not in self._runs.columns])
        self._runs.append(pending.rows)
        for row in pending.rows:
            if row["status"] == "ok":
                self.done.add(row["run_id"])
                self.ok_count += 1
            else:
                self.failed_count += 1

    # ---- closing ------------------------------------------------------------------------------------------

    def close(self, status: str, counts: dict[str, int], finalize: bool = True) -> None:
        """Commit what is buffered; when `finalize`, merge the staged tables and fix the column order."""
        try:
            self._close(status, counts, finalize)
        finally:
            if self._lock is not None:
                os.close(self._lock)
                self._lock = None

    def _close(self, status: str, counts: dict[str, int], finalize: bool) -> None:
        self.flush()
        for log in (self._runs, self._timing):
            if log is not None:
                log.close()
        if finalize:
            for dataset in (self.timeseries, self.events):
                if dataset is not None:
                    dataset.finalize()
            canonicalize_columns(
                self.directory / RUNS, len(FIXED_COLUMNS) + len(self.experiment.factors), self._schemas
            )
        meta = self._metadata
        ended = provenance.now()
        header = read_header(self.directory / RUNS) or []
        meta["metrics"] = header[len(FIXED_COLUMNS) + len(self.experiment.factors) :]
        meta.update(status=status, ended_at=ended, counts=counts)
        meta["sessions"][-1].update(ended_at=ended, status=status, counts=counts)
        self._save_metadata()


def _lock(directory: Path) -> int:
    """Hold an exclusive lock on the directory for the batch: two writers would interleave their rows."""
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(f"{directory} is being written by another balloonsim run; wait for it or use --out") from None
    return fd


def metric_order(schemas: list[list[str]]) -> list[str]:
    """One column order from the metric lists runs reported, whatever order the runs finished in.

    Richest list first (then lexicographically), each later list adding its new names in its own order: with
    one list (every run reports the same metrics) this is simply the simulator's order.
    """
    order: dict[str, None] = {}
    for schema in sorted(schemas, key=lambda names: (-len(names), names)):
        order.update(dict.fromkeys(schema))
    return list(order)


def canonicalize_columns(path: Path, first_metric: int, schemas: list[list[str]]) -> None:
    """Rewrite runs.csv with its metric columns in `metric_order` (only when they are not already)."""
    header = read_header(path) if path.exists() else None
    if header is None:
        return
    metrics = header[first_metric:]
    wanted = [name for name in metric_order(schemas) if name in metrics]
    wanted += [name for name in metrics if name not in wanted]
    if wanted == metrics:
        return
    permutation = list(range(first_metric)) + [header.index(name) for name in wanted]

    def reordered() -> Iterator[str]:
        for line in complete_lines(path):
            cells = parse_line(line)
            if len(cells) == len(header):
                yield format_line([cells[i] for i in permutation])

    write_atomically(path, reordered())

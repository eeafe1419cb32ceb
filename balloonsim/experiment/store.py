"""The result directory of one experiment: what is done already, and committing runs as they finish.

Layout of `results/<experiment>/`:

- `runs.csv`: one row per run: run_id, replicate, seed, status (ok|failed), error, the factor columns
  (`levels`: a scalar factor's value, sizes in bytes; a table factor's label and one column per key), then each
  metric.  Rows are in design order once the batch is finished (`iter_runs`), so the same experiment gives the
  same bytes whatever the executor; while a batch runs they are in the order runs finished.
- `timing.csv`: run_id, wall_time_s, worker (the nondeterministic columns, kept apart), and the number of rows
  each run has in the time series and events tables (how resume checks that a run is whole).
- `timeseries.parquet` (or `.csv`), `events.parquet` (or `.csv`, only with --events): per-run tables with a
  `run_id` column; staged in `*.parts/` while the batch runs (see `parts`).
- `metadata.json`: provenance (each session's commit, executor and wall time), the experiment's digests and
  seed basis, factor, column and metric names, counts.
- `experiment.toml`: the experiment file as given.

Commit protocol, per flush of finished runs: table parts first, then timing rows, then runs.csv rows; a run is
done exactly when its `ok` row is in runs.csv.  A run is buffered by `add` as one object appended in one step,
so an interrupt (SIGINT) at any point either buffers all of it or none.  Resume (`open` on an existing
directory) repairs whatever a crash left: torn lines, failed rows (to retry), duplicates, parts or timing rows
of uncommitted runs, and `ok` runs whose table rows are not all there (run again).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from balloonsim.errors import UserError
from balloonsim.experiment import provenance, tomlwrite
from balloonsim.experiment.columns import to_arrow
from balloonsim.experiment.csvlog import (
    CsvLog,
    complete_lines,
    open_fd,
    open_text,
    parse_line,
    read_header,
    recover,
    remove_temporaries,
    rewrite_rows,
    write_atomically,
)
from balloonsim.experiment.design import RunSpec, SeedBasis, count_points, iter_runs, seed_basis
from balloonsim.experiment.keypaths import canonical_json
from balloonsim.experiment.levels import factor_cells, factor_columns
from balloonsim.experiment.parts import PartDataset
from balloonsim.experiment.spec import RESULT_COLUMNS, Experiment
from balloonsim.experiment.worker import RunOutcome

RESULTS_FORMAT = "balloonsim-results/2"
FORMAT_PREFIX = "balloonsim-results/"
FIXED_COLUMNS = list(RESULT_COLUMNS)
TIMING_COLUMNS = ["run_id", "wall_time_s", "worker", "timeseries_rows", "events_rows"]
RUNS, TIMING, METADATA, EXPERIMENT_COPY = "runs.csv", "timing.csv", "metadata.json", "experiment.toml"
LOCK = ".lock"
# What `balloonsim run` and the analysis write into a results directory: `--force` may delete a directory that
# holds only these (so it can start over when metadata.json is lost), and nothing else.
OWN_NAMES = (RUNS, TIMING, METADATA, EXPERIMENT_COPY, LOCK, "summary.csv", "comparisons.csv", "metrics.csv")
OWN_NAMES += ("REPORT.md", "report.html", "plots")
OWN_PREFIXES = ("timeseries.", "events.", RUNS, TIMING, METADATA, EXPERIMENT_COPY)


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


@dataclass(frozen=True)
class _Entry:
    """One finished run, complete: buffered in one step so an interrupt cannot leave half of it."""

    row: dict[str, Any]
    timing: dict[str, Any]
    timeseries: Any
    events: Any


@dataclass
class _Pending:
    entries: list[_Entry] = field(default_factory=list)
    nbytes: int = 0
    since: float | None = None


@dataclass(frozen=True)
class Target:
    """What writing an experiment into a directory means: `mode` new|resume|replace, and the directory's
    seed basis and previous metadata when resuming."""

    mode: str
    basis: SeedBasis | None = None
    previous: dict[str, Any] | None = None
    grown: bool = False


def read_metadata(directory: Path) -> dict[str, Any] | None:
    """The directory's metadata when it is a balloonsim results directory (of any format), else None."""
    try:
        with open_text(directory / METADATA) as handle:
            meta = json.loads(handle.read())
    except (OSError, ValueError, UserError):
        return None
    if isinstance(meta, dict) and str(meta.get("format", "")).startswith(FORMAT_PREFIX):
        return meta
    return None


def _is_own(name: str) -> bool:
    return name in OWN_NAMES or name.startswith(OWN_PREFIXES) or name.endswith(".tmp")


def check_out_dir(directory: Path) -> None:
    """Refuse, before anything is written, a results path that cannot become a directory, in words."""
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise UserError(f"--out {directory}: {_reason(exc)}") from None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            try:
                directory.resolve(strict=True)
            except (OSError, RuntimeError):
                raise UserError(f"--out {directory}: a symbolic link that leads nowhere (or into a loop)") from None
        if not directory.is_dir():
            raise UserError(f"--out {directory}: exists and is not a directory")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise UserError(f"--out {directory}: not writable")
        return
    for part in directory.parts:
        if len(part.encode()) > 255:
            raise UserError(f"--out {directory}: the name {part[:24]!r}... is longer than 255 bytes")
    parent = directory.parent
    while True:
        try:
            st = os.stat(parent)
        except FileNotFoundError:
            parent = parent.parent
            continue
        except OSError as exc:
            raise UserError(f"--out {directory}: {parent}: {_reason(exc)}") from None
        break
    if not stat.S_ISDIR(st.st_mode):
        raise UserError(f"--out {directory}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"--out {directory}: cannot create it, {parent} is not writable")


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "a loop of symbolic links"
    if exc.errno == errno.ENAMETOOLONG:
        return "a name is too long"
    if exc.errno == errno.ENOTDIR:
        return "a part of the path is a file, not a directory"
    return exc.strerror or str(exc)


def check_target(directory: Path, exp: Experiment, options: StoreOptions, force: bool) -> Target:
    """How `exp` would be written into `directory`; raises UserError if refused. Reads only."""
    check_out_dir(directory)
    if not directory.exists():
        return Target("new")
    names = [p.name for p in directory.iterdir()]
    if not any(name != LOCK for name in names):
        return Target("new")
    meta = read_metadata(directory)
    if meta is None:
        if not all(_is_own(name) for name in names):
            raise UserError(f"{directory} is not empty and holds no balloonsim results; choose another --out")
        if force:
            return Target("replace")
        raise UserError(
            f"{directory / METADATA} is missing or unreadable (an interrupted or damaged results directory); "
            "use --force to start over or --out to write elsewhere"
        )
    if force:
        return Target("replace")
    if meta.get("format") != RESULTS_FORMAT:
        raise UserError(
            f"{directory} was written by an older balloonsim (results format {meta.get('format')!r}); the "
            "analysis still reads it, but runs cannot be added: use --force to run it again, or --out"
        )
    old = meta.get("source", {})
    basis = SeedBasis.from_json(meta.get("seed_basis")) or seed_basis(exp)
    grown = False
    if old.get("design_sha256") != exp.design_sha256:
        reason = growth_refusal(old.get("resolved"), exp)
        if reason is not None:
            raise UserError(
                f"{directory} holds results of a different experiment ({meta.get('experiment')!r}: {reason}); "
                "use --force to replace them or --out to write elsewhere"
            )
        grown = True
    recorded = StoreOptions(**meta.get("options", {}))
    if recorded != options:
        raise UserError(
            f"{directory} was written with --timeseries {recorded.timeseries}"
            f"{' --events' if recorded.events else ''}; resume with the same options, "
            "or use --force to start over"
        )
    return Target("resume", basis, meta, grown)


def growth_refusal(old: Any, exp: Experiment) -> str | None:
    """Why `exp` does not extend the experiment `old` (its resolved JSON) by replications or levels; None if it does.

    An extension keeps everything else (base, seed, design, zip groups, exclusions, factor names) and every old
    level, so every run already in the directory is a run of the new experiment too, with the same seed.
    """
    if not isinstance(old, dict):
        return "no record of its design"
    new = exp.model_dump(mode="json")
    for key in ("name", "base", "seed", "design", "zip", "exclude"):
        if canonical_json(old.get(key)) != canonical_json(new.get(key)):
            return f"its {key!r} differs"
    old_factors, new_factors = old.get("factors") or {}, new.get("factors") or {}
    if list(old_factors) != list(new_factors):
        return "its factors differ"
    for name, levels in old_factors.items():
        now = {canonical_json(level) for level in new_factors[name]}
        gone = [level for level in levels if canonical_json(level) not in now]
        if gone:
            return f"level {gone[0]!r} of factor {name!r} is gone"
    if int(old.get("replications", 1)) > exp.replications:
        return f"replications lowered from {old.get('replications')} to {exp.replications}"
    return None


def ok_run_ids(directory: Path) -> set[str]:
    """Run ids with an `ok` row in runs.csv, read-only (tolerates a torn last line)."""
    path = directory / RUNS
    if not os.path.lexists(path):
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


def finished(directory: Path, exp: Experiment, options: StoreOptions) -> bool:
    """True when `directory` already holds every run of `exp`, all ok and merged: running again would change
    nothing, so nothing is written (not even metadata). Reads only."""
    meta = read_metadata(directory)
    if meta is None or meta.get("format") != RESULTS_FORMAT or meta.get("status") != "complete":
        return False
    if meta.get("source", {}).get("design_sha256") != exp.design_sha256:
        return False
    if StoreOptions(**meta.get("options", {})) != options:
        return False
    total = count_points(exp) * exp.replications
    return len(ok_run_ids(directory)) == total and not any(p.name.endswith(".parts") for p in directory.iterdir())


class ResultStore:
    """An open results directory: `done` run ids, `add` finished runs, `close` to finalize."""

    def __init__(self, directory: Path, exp: Experiment, options: StoreOptions, policy: FlushPolicy):
        self.directory = directory
        self.experiment = exp
        self.options = options
        self.policy = policy
        self.basis: SeedBasis = seed_basis(exp)
        self.done: set[str] = set()
        self.ok_count = 0
        self.failed_count = 0
        self.repaired = 0  # ok runs found incomplete on opening, to run again
        self.timeseries = PartDataset(directory, "timeseries", options.timeseries)
        self.events = PartDataset(directory, "events", options.timeseries) if options.events else None
        self.factor_columns = factor_columns(exp)
        self._pending = _Pending()
        self._runs: CsvLog | None = None
        self._timing: CsvLog | None = None
        self._metadata: dict[str, Any] = {}
        self._metric_columns: dict[str, str] = {}
        self._schemas: list[list[str]] = []
        self._schemas_changed = False
        self._lock: int | None = None
        self._started = time.perf_counter()

    @property
    def first_metric(self) -> int:
        return len(FIXED_COLUMNS) + sum(len(c) for c in self.factor_columns.values())

    def iter_runs(self) -> Iterator[RunSpec]:
        """The experiment's runs in design order, with this directory's seeds."""
        return iter_runs(self.experiment, self.basis)

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
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--out {directory}: cannot create it ({exc.strerror or exc})") from None
        lock = _lock(directory)
        try:
            target = check_target(directory, exp, options, force)  # again, now that no one else can write
            if target.mode == "replace":
                for path in directory.iterdir():
                    if path.name != LOCK:
                        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            store = cls(directory, exp, options, policy or FlushPolicy())
            store._lock = lock
            if target.basis is not None:
                store.basis = target.basis
            remove_temporaries(directory, [RUNS, TIMING, METADATA, EXPERIMENT_COPY, "timeseries.", "events."])
            store._start_metadata(target.previous, executor)
            store._recover()
            store._write_experiment_copy()
        except BaseException:
            os.close(lock)
            raise
        return store

    def _recover(self) -> None:
        datasets = [d for d in (self.timeseries, self.events) if d is not None]
        for dataset in datasets:
            dataset.recover_merge()
        header, self.done = recover(self.directory / RUNS, "run_id", lambda row: row.get("status") == "ok")
        recover(self.directory / TIMING, "run_id", lambda row: row.get("run_id") in self.done)
        incomplete = self._incomplete(datasets)
        if incomplete:
            self.done -= incomplete
            self.repaired = len(incomplete)
            recover(self.directory / RUNS, "run_id", lambda row: row.get("run_id") in self.done)
            recover(self.directory / TIMING, "run_id", lambda row: row.get("run_id") in self.done)
        for dataset in datasets:
            dataset.recover(self.done)
        factor_part = [c for cols in self.factor_columns.values() for c in cols]
        columns = FIXED_COLUMNS + factor_part
        if header is not None:
            present = [c for c in header[len(FIXED_COLUMNS) :] if c in set(factor_part)]
            end = len(FIXED_COLUMNS) + len(present)
            if header[: len(FIXED_COLUMNS)] != FIXED_COLUMNS or header[len(FIXED_COLUMNS) : end] != present:
                raise UserError(f"{self.directory / RUNS}: columns do not match the experiment; use --force")
            columns = columns + header[end:]
            if present != factor_part:  # grown by levels that set new keys of a table factor: widen in place
                rewrite_rows(self.directory / RUNS, columns, ())
        self._runs = CsvLog(self.directory / RUNS, columns)
        timing_header = read_header(self.directory / TIMING) if os.path.lexists(self.directory / TIMING) else None
        if timing_header is not None and timing_header != TIMING_COLUMNS:
            raise UserError(f"{self.directory / TIMING}: columns do not match; use --force")
        self._timing = CsvLog(self.directory / TIMING, TIMING_COLUMNS)
        fixed = set(columns[: self.first_metric])
        for column in columns[self.first_metric :]:
            name = column[len("metric.") :] if column.startswith("metric.") and column[7:] in fixed else column
            self._metric_columns[name] = column

    def _incomplete(self, datasets: list[PartDataset]) -> set[str]:
        """`ok` runs whose table rows are not all on disk (or whose timing row is lost): to be run again."""
        if not self.done:
            return set()
        expected: dict[str, tuple[str, str]] = {}
        path = self.directory / TIMING
        if os.path.lexists(path):
            lines = complete_lines(path)
            header = parse_line(next(lines, "\n"))
            if header == TIMING_COLUMNS:
                for line in lines:
                    cells = parse_line(line)
                    if len(cells) == len(header):
                        expected[cells[0]] = (cells[3], cells[4])
        incomplete = {rid for rid in self.done if rid not in expected}
        for column, dataset in ((0, self.timeseries), (1, self.events)):
            if dataset is None or dataset not in datasets:
                continue
            counts = dataset.row_counts()
            for rid in self.done:
                want = expected.get(rid, ("", ""))[column]
                if want != "" and counts.get(rid, 0) != int(want):
                    incomplete.add(rid)
        return incomplete

    def _write_experiment_copy(self) -> None:
        exp = self.experiment
        text = exp.source_text
        if text is None:
            text = tomlwrite.dumps(exp.model_dump(mode="json"))
        path = self.directory / EXPERIMENT_COPY
        try:
            with open_text(path) as handle:
                if handle.read() == text:
                    return
        except (OSError, UnicodeDecodeError):
            pass
        write_atomically(path, [text])

    # ---- metadata -----------------------------------------------------------------------------------------

    def _start_metadata(self, previous: dict[str, Any] | None, executor: str) -> None:
        exp = self.experiment
        env = provenance.environment(self.directory)
        sessions = list(previous.get("sessions", [])) if previous else []
        git = env.get("git", {})
        sessions.append(
            {
                "started_at": provenance.now(),
                "ended_at": None,
                "status": "running",
                "executor": executor,
                "balloonsim": env.get("balloonsim"),
                "commit": git.get("commit"),
                "dirty": git.get("dirty"),
                "ran": 0,
                "wall_time_s": 0.0,
            }
        )
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
            "environment": env,
            "executor": executor,
            "started_at": previous.get("started_at") if previous else sessions[-1]["started_at"],
            "ended_at": None,
            "status": "running",
            "factors": list(exp.factors),
            "factor_columns": self.factor_columns,
            "metrics": [],
            "metric_schemas": self._schemas,
            "seed_basis": self.basis.to_json(),
            "counts": {},
            "commits": _commits(sessions),
            "run_time_s": _run_time(sessions),
            "sessions": sessions,
        }
        self._save_metadata()

    def _save_metadata(self) -> None:
        write_atomically(self.directory / METADATA, [json.dumps(self._metadata, indent=2, default=str) + "\n"])

    # ---- adding runs --------------------------------------------------------------------------------------

    def add(self, spec: RunSpec, outcome: RunOutcome) -> None:
        """Buffer a finished run; it is committed by the next `flush` (which `due` says when to call).

        Everything is built first and buffered by one `list.append`, so an interrupt anywhere in here leaves
        the run either wholly buffered or not at all (then it simply runs again on resume).
        """
        row: dict[str, Any] = {
            "run_id": spec.run_id,
            "replicate": spec.replicate,
            "seed": spec.seed,
            "status": "ok" if outcome.ok else "failed",
            "error": outcome.error,
        }
        row.update(factor_cells(self.experiment, spec.factors, spec.level_index))
        schema = [self._metric_column(name) for name in outcome.metrics]
        row.update(zip(schema, outcome.metrics.values(), strict=True))
        ts = to_arrow(spec.run_id, outcome.timeseries) if outcome.ok else None
        ev = to_arrow(spec.run_id, outcome.events) if outcome.ok and self.events is not None else None
        timing = {
            "run_id": spec.run_id,
            "wall_time_s": round(outcome.wall_time_s, 6),
            "worker": outcome.worker,
            "timeseries_rows": ts.num_rows if ts is not None else 0,
            "events_rows": (ev.num_rows if ev is not None else 0) if self.events is not None else None,
        }
        entry = _Entry(row, timing, ts, ev)
        pending = self._pending
        pending.entries.append(entry)
        if schema and schema not in self._schemas:
            self._schemas.append(schema)
            self._schemas_changed = True
        # the memory the tables hold (Table.nbytes walks a string column's offsets: 50 us a run, against 1 us)
        pending.nbytes += sum(t.get_total_buffer_size() for t in (ts, ev) if t is not None)
        if pending.since is None:
            pending.since = time.monotonic()

    def _metric_column(self, name: str) -> str:
        column = self._metric_columns.get(name)
        if column is None:
            taken = set(FIXED_COLUMNS) | {c for cols in self.factor_columns.values() for c in cols}
            column = f"metric.{name}" if name in taken else name
            self._metric_columns[name] = column
        return column

    def due(self) -> bool:
        p, policy = self._pending, self.policy
        if p.since is None:
            return False
        return (
            len(p.entries) >= policy.max_runs
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
        entries = pending.entries
        if not entries:
            return
        self.timeseries.write_part([e.timeseries for e in entries if e.timeseries is not None])
        if self.events is not None:
            self.events.write_part([e.events for e in entries if e.events is not None])
        assert self._runs is not None and self._timing is not None
        if self._schemas_changed:
            self._metadata["metric_schemas"] = self._schemas
            self._save_metadata()  # the column order must survive a crash of this session
            self._schemas_changed = False
        self._timing.append([e.timing for e in entries])
        rows = [e.row for e in entries]
        self._runs.add_columns([c for row in rows for c in row if c not in self._runs.columns])
        self._runs.append(rows)
        for row in rows:
            if row["status"] == "ok":
                self.done.add(row["run_id"])
                self.ok_count += 1
            else:
                self.failed_count += 1

    # ---- closing ------------------------------------------------------------------------------------------

    def close(self, status: str, counts: dict[str, int], finalize: bool = True) -> None:
        """Commit what is buffered; when `finalize`, merge the staged tables and runs.csv, in design order."""
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
            order = [spec.run_id for spec in self.iter_runs()]
            for dataset in (self.timeseries, self.events):
                if dataset is not None:
                    dataset.finalize(order)
            self._finalize_runs(order)
        meta = self._metadata
        ended = provenance.now()
        header = read_header(self.directory / RUNS) or []
        meta["metrics"] = header[self.first_metric :]
        meta.update(status=status, ended_at=ended, counts=counts)
        session = meta["sessions"][-1]
        session.update(
            ended_at=ended,
            status=status,
            counts=counts,
            ran=self.ok_count + self.failed_count,
            wall_time_s=round(time.perf_counter() - self._started, 3),
        )
        meta["commits"] = _commits(meta["sessions"])
        meta["run_time_s"] = _run_time(meta["sessions"])
        self._save_metadata()

    def _finalize_runs(self, order: list[str]) -> None:
        """runs.csv in design order (`order`, the run ids), metric columns in `metric_order`: the same bytes for
        the same results."""
        path = self.directory / RUNS
        header = read_header(path) if os.path.lexists(path) else None
        if header is None:
            return
        metrics = header[self.first_metric :]
        wanted = [name for name in metric_order(self._schemas) if name in metrics]
        wanted += [name for name in metrics if name not in wanted]
        rewrite_rows(path, header[: self.first_metric] + wanted, order)


def _commits(sessions: list[dict[str, Any]]) -> list[str]:
    """The commits of the sessions that ran something, each once, oldest first."""
    seen: dict[str, None] = {}
    for session in sessions:
        if session.get("ran") and session.get("commit"):
            seen[str(session["commit"]) + ("+dirty" if session.get("dirty") else "")] = None
    return list(seen)


def _run_time(sessions: list[dict[str, Any]]) -> float:
    """Wall time actually spent running, summed over sessions (not the span from first start to last end)."""
    return round(sum(float(s.get("wall_time_s") or 0.0) for s in sessions), 3)


def _lock(directory: Path) -> int:
    """Hold an exclusive lock on the directory for the batch: two writers would interleave their rows."""
    fd = open_fd(directory / LOCK, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(f"{directory} is being written by another balloonsim run; wait for it or use --out") from None
    return fd


def check_not_running(directory: Path) -> None:
    """Refuse to read a results directory a batch is still writing (its summary would be of a part)."""
    path = Path(directory) / LOCK
    if not os.path.lexists(path):
        return
    fd = open_fd(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UserError(f"{directory} is still being written by a balloonsim run; wait for it to finish") from None
    finally:
        os.close(fd)


def metric_order(schemas: list[list[str]]) -> list[str]:
    """One column order from the metric lists runs reported, whatever order the runs finished in.

    Richest list first (then lexicographically), each later list adding its new names in its own order: with
    one list (every run reports the same metrics) this is simply the simulator's order.
    """
    order: dict[str, None] = {}
    for schema in sorted(schemas, key=lambda names: (-len(names), names)):
        order.update(dict.fromkeys(schema))
    return list(order)

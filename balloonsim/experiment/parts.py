"""Per-run tables (time series, events) staged as immutable Parquet parts, merged into one file at the end.

A Parquet file cannot be appended to after a crash (its footer would be missing), so while a batch runs each
flush writes a new part `<name>.parts/part-NNNNNN.parquet` (fresh temporary file, fsync, rename: a part is
whole or absent).  Parts are written *before* the rows of their runs are committed to runs.csv, so a committed
run always has its table; on resume, parts are filtered to committed runs, which drops the tables of runs that
will be retried, and `row_counts` (Arrow value counts, a row group at a time) lets the store check that every
committed run's rows are all there.
`finalize` merges the previous final file (if any) and the parts into `<name>.parquet` or `<name>.csv` under a
small journal, so a crash during the merge never loses or duplicates a run:

1. write a fresh temporary file;  2. write the journal `<name>.merge.json` naming it and the parts merged;
3. `os.replace` it onto the final file;  4. delete those parts;  5. delete the journal.

The merged file holds the runs in design order (`finalize(order)`), its columns in one order and its Parquet row
groups of ROW_GROUP_ROWS rows: the same rows give the same bytes, whatever order the runs finished in, however
the batch flushed them and whether it was interrupted and resumed (as runs.csv).

Recovery: journal and its temporary file both present -> the merge did not happen (drop both); journal alone
-> it did (delete the parts it names).  Readers therefore see each run exactly once: in the final file, or
during a batch through `iter_tables(committed)`, which filters parts to committed runs.

No link is followed: a `<name>.parts` or final file that is a symbolic link is refused, parts that are not
regular files are ignored, and temporary files get fresh names.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from balloonsim.errors import UserError
from balloonsim.experiment.csvlog import (
    complete_lines,
    data_lines,
    format_line,
    fsync_dir,
    new_temporary,
    open_fd,
    open_text,
    parse_line,
    remove_temporaries,
    write_atomically,
)

if TYPE_CHECKING:
    import pyarrow as pa

PART_RE = re.compile(r"^part-(\d{6,})\.parquet$")
FORMATS = ("parquet", "csv")
ROW_GROUP_ROWS = 1 << 13  # rows per row group of a part and of a merged Parquet file (fixed: same rows, same bytes)
ROW_GROUPS_CACHED = 8  # decoded row groups kept while a merge reads its sources in design order


def concat(tables: Iterable[pa.Table]) -> pa.Table:
    """Tables with possibly different columns as one, missing columns null, types widened where needed."""
    import pyarrow as pa

    return pa.concat_tables(list(tables), promote_options="permissive")


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns, in order, nulls where it has none.

    A column already of its type is kept as it is: a cast, even to the same type, loads `pyarrow.compute`
    (about 30 ms), which merging parts of one kind of run never needs."""
    import pyarrow as pa

    columns = []
    for f in schema:
        if f.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, f.type))
            continue
        column = table.column(f.name)
        columns.append(column if column.type == f.type else column.cast(f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def column_order(schemas: Iterable[pa.Schema]) -> list[str]:
    """One column order from the schemas of the tables merged, whatever order they come in: the richest first
    (then by names), each later one adding its new columns in its own order (as `store.metric_order`)."""
    order: dict[str, None] = {}
    for names in sorted({tuple(schema.names) for schema in schemas}, key=lambda names: (-len(names), names)):
        order.update(dict.fromkeys(names))
    return list(order)


def _is_link(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _refuse_link(path: Path) -> None:
    if _is_link(path):
        raise UserError(f"{path} is a symbolic link; balloonsim does not follow links in a results directory")


def _write_parquet(path: Path, schema: pa.Schema, tables: Iterable[pa.Table]) -> Path:
    """Write `tables` (of `schema`) to a fresh temporary file beside `path`, durably; returns its name. Its row
    groups are of ROW_GROUP_ROWS rows, as the merged file's: the merge decodes a row group at a time, so however
    many runs a part holds, it never has more than ROW_GROUPS_CACHED x ROW_GROUP_ROWS rows decoded (Arrow's default
    of up to a million rows per group made a part one row group, and the merge of a 720-run batch 105 MiB larger)."""
    import pyarrow.parquet as pq

    fd, tmp = new_temporary(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            with pq.ParquetWriter(handle, schema) as writer:
                for table in tables:
                    if table.num_rows:
                        writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _filtered_copy(path: Path, runs: pa.Array) -> Path:
    """The rows of `path` whose run id is in `runs`, copied to a fresh temporary file beside it (`_write_parquet`)
    one row group at a time: a final file that lost a run on resume may hold a whole study's time series."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as source:
        groups = (source.read_row_group(group) for group in range(source.num_row_groups))
        kept = (table.filter(pc.is_in(table.column("run_id"), value_set=runs)) for table in groups)
        return _write_parquet(path, source.schema_arrow, kept)


class CorruptPart(Exception):
    """A staged part that cannot be read (a disk or filesystem fault): its runs must be run again."""


class PartDataset:
    """One kind of per-run table of a result directory, e.g. `timeseries` written as Parquet or CSV."""

    def __init__(self, directory: Path, name: str, fmt: str = "parquet"):
        if fmt not in FORMATS:
            raise ValueError(f"unknown table format {fmt!r}")
        self.directory = directory
        self.name = name
        self.format = fmt
        self.final = directory / f"{name}.{fmt}"
        self.parts_dir = directory / f"{name}.parts"
        self.journal = directory / f"{name}.merge.json"
        self._next: int | None = None
        self._filtered = False  # the final file lost runs in `recover`: merge it again even without parts

    # ---- writing during a batch -------------------------------------------------------------------------

    def parts(self) -> list[Path]:
        """The staged parts: regular files named part-NNNNNN.parquet (anything else is not ours)."""
        _refuse_link(self.parts_dir)
        if not self.parts_dir.is_dir():
            return []
        found = []
        for entry in os.scandir(self.parts_dir):
            if PART_RE.match(entry.name) and entry.is_file(follow_symlinks=False):
                found.append(Path(entry.path))
        return sorted(found)

    def write_part(self, tables: list[pa.Table]) -> Path | None:
        """Durably write one part holding `tables` (one or more runs); None when there is nothing to write."""
        tables = [t for t in tables if t is not None and t.num_rows]
        if not tables:
            return None
        if self._next is None:
            _refuse_link(self.parts_dir)
            self.parts_dir.mkdir(exist_ok=True)
            numbers = [int(PART_RE.match(p.name).group(1)) for p in self.parts()]  # type: ignore[union-attr]
            self._next = max(numbers, default=-1) + 1
        path = self.parts_dir / f"part-{self._next:06d}.parquet"
        self._next += 1
        table = concat(tables)
        tmp = _write_parquet(path, table.schema, [table])
        os.replace(tmp, path)
        fsync_dir(self.parts_dir)
        return path

    # ---- recovery ------------------------------------------------------------------------------------------

    def recover_merge(self) -> None:
        """Finish or undo a merge a crash interrupted; remove temporary files."""
        _refuse_link(self.final)
        if os.path.lexists(self.journal):
            try:
                with open_text(self.journal) as handle:
                    journal = json.load(handle)
                merged, tmp = list(journal["parts"]), journal.get("tmp", self.final.name + ".tmp")
            except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
                raise UserError(f"{self.journal}: unreadable ({exc}); use --force to start over") from None
            if os.path.lexists(self.directory / Path(str(tmp)).name):
                pass  # the merge did not happen: the temporary file goes below, the parts stay
            else:
                for name in merged:
                    (self.parts_dir / Path(name).name).unlink(missing_ok=True)
            self.journal.unlink()
        remove_temporaries(self.directory, [self.final.name])
        if self.parts_dir.is_dir() and not _is_link(self.parts_dir):
            for entry in os.scandir(self.parts_dir):
                if entry.name.endswith(".tmp"):
                    os.unlink(entry.path)

    def row_counts(self) -> collections.Counter[str]:
        """Rows per run id in the final file and the parts. A part that cannot be read is deleted (its runs
        are then incomplete and run again); an unreadable final file is an error."""
        counts: collections.Counter[str] = collections.Counter()
        if os.path.lexists(self.final):
            try:
                counts.update(self._counts(self.final, final=True))
            except CorruptPart as exc:
                raise UserError(f"{self.final}: cannot be read ({exc}); use --force to start over") from None
        for part in self.parts():
            try:
                counts.update(self._counts(part))
            except CorruptPart:
                part.unlink()
        return counts

    def _counts(self, path: Path, final: bool = False) -> collections.Counter[str]:
        """Rows per run id in one file, counted by Arrow a row group (or a block of CSV) at a time: a resume
        reads every row's run id, and as a list of Python strings the 650,358 rows of a 720-run sweep-180 batch
        took 0.26 s and 115 MiB (0.024 s and 7 MiB now: benchmarks/profile_merge.py)."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        counts: collections.Counter[str] = collections.Counter()

        def count(piece) -> None:
            found = pc.value_counts(piece.column("run_id"))
            runs, rows = found.field("values").to_pylist(), found.field("counts").to_pylist()
            counts.update({str(run): n for run, n in zip(runs, rows, strict=True)})

        try:
            if final and self.format == "csv":
                options = pacsv.ConvertOptions(include_columns=["run_id"], column_types=_id_types())
                with pacsv.open_csv(path, convert_options=options) as blocks:
                    for block in blocks:
                        count(block)
            else:
                with pq.ParquetFile(path) as parquet:
                    for group in range(parquet.num_row_groups):
                        count(parquet.read_row_group(group, columns=["run_id"]))
        except (OSError, pa.ArrowException, ValueError, KeyError) as exc:
            raise CorruptPart(str(exc).strip()[:200]) from None
        return counts

    def recover(self, committed: set[str]) -> None:
        """Keep only the tables of committed runs, in the parts and the final file."""
        ids = None  # the committed run ids as an Arrow array, made once a part needs filtering (pyarrow loads then)
        for part in self.parts():
            held = set(self._counts(part))
            if held <= committed:
                continue
            if not held & committed:
                part.unlink()
                continue
            if ids is None:
                from balloonsim.experiment import arrow

                ids = arrow.strings(sorted(committed))
            os.replace(_filtered_copy(part, ids), part)
        if self.parts_dir.is_dir():
            fsync_dir(self.parts_dir)
        if os.path.lexists(self.final) and set(self._counts(self.final, final=True)) - committed:
            self._filter_final(committed)

    def _filter_final(self, committed: set[str]) -> None:
        """Drop the rows of runs no longer committed from the final file (rare: a run found incomplete); `finalize`
        then merges it again, so that its row groups are those of a merge."""
        self._filtered = True
        if self.format == "parquet":
            from balloonsim.experiment import arrow

            os.replace(_filtered_copy(self.final, arrow.strings(sorted(committed))), self.final)
        else:
            header = None

            def kept() -> Iterator[str]:
                nonlocal header
                for number, line in enumerate(complete_lines(self.final)):
                    if number == 0:
                        header = parse_line(line)
                        yield line
                    elif parse_line(line)[header.index("run_id")] in committed:  # type: ignore[union-attr]
                        yield line

            write_atomically(self.final, kept())
        fsync_dir(self.directory)

    # ---- the final file ------------------------------------------------------------------------------------

    def finalize(self, order: Iterable[str] = ()) -> None:
        """Merge the final file and all parts into a new final file, its runs in `order` (run ids in design order;
        runs not named there follow in the order found); remove the parts."""
        parts = self.parts()
        if not parts and not (self._filtered and self.final.exists()):
            if self.parts_dir.is_dir():
                with contextlib.suppress(OSError):
                    self.parts_dir.rmdir()
            return
        _refuse_link(self.final)
        fd, tmp = new_temporary(self.final)
        try:
            with os.fdopen(fd, "wb") as handle:
                position = {run_id: i for i, run_id in enumerate(order)}
                if self.format == "parquet":
                    self._merge_parquet(parts, handle, position)
                else:
                    self._merge_csv(parts, handle, position)
                handle.flush()
                os.fsync(handle.fileno())
            write_atomically(self.journal, [json.dumps({"parts": [p.name for p in parts], "tmp": tmp.name})])
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, self.final)
        fsync_dir(self.directory)
        for part in parts:
            part.unlink()
        with contextlib.suppress(OSError):
            self.parts_dir.rmdir()
        self.journal.unlink()
        fsync_dir(self.directory)

    def _merge_parquet(self, parts: list[Path], handle, position: dict[str, int]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        sources = ([self.final] if self.final.exists() else []) + parts
        schemas = [pq.read_schema(p) for p in sources]
        unified = pa.unify_schemas(schemas, promote_options="permissive")
        schema = pa.schema([unified.field(name) for name in column_order(schemas)])
        groups = _RowGroups([pq.ParquetFile(p) for p in sources], schema)
        pending: list[pa.Table] = []
        rows = 0
        with pq.ParquetWriter(handle, schema) as writer:

            def write(rows_out: int) -> None:
                nonlocal pending, rows
                table = pa.concat_tables(pending).combine_chunks()  # one chunk: pages cut where the rows say
                writer.write_table(table.slice(0, rows_out), row_group_size=ROW_GROUP_ROWS)
                pending = [table.slice(rows_out)] if table.num_rows > rows_out else []
                rows -= rows_out

            for source, group, start, stop in _pieces(sources, position):
                pending.append(groups.get(source, group).slice(start, stop - start))
                rows += stop - start
                while rows >= ROW_GROUP_ROWS:
                    write(ROW_GROUP_ROWS)
            if rows:
                write(rows)

    def _merge_csv(self, parts: list[Path], handle, position: dict[str, int]) -> None:
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        old_header = None
        if self.final.exists():
            first = next(complete_lines(self.final), None)
            old_header = parse_line(first) if first else None
        columns = list(old_header or [])
        schemas = [pq.read_schema(p) for p in parts]
        columns += [name for name in column_order(schemas) if name not in columns]
        padding = "," * (len(columns) - len(old_header or []))
        target = pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])
        target = pa.schema([target.field(c) if c in target.names else pa.field(c, pa.string()) for c in columns])
        handle.write(format_line(columns).encode())
        old = _csv_runs(self.final, old_header, position) if old_header is not None else []
        groups = _RowGroups([pq.ParquetFile(p) for p in parts], target)
        pieces = [(key, None, piece) for key, piece in old]
        pieces += [((at, 1 + source, group, start), source, (group, start, stop))
                   for at, source, group, start, stop in _keyed_pieces(parts, position)]  # fmt: skip
        pieces.sort(key=lambda piece: piece[0])
        options = pacsv.WriteOptions(include_header=False)
        with open(open_fd(self.final, os.O_RDONLY), "rb") if old else contextlib.nullcontext() as final:
            for _, source, piece in pieces:
                if source is None:  # lines of the previous final file, widened to the new columns
                    offset, end = piece
                    final.seek(offset)
                    for line in final.read(end - offset).split(b"\n")[:-1]:
                        handle.write(line + padding.encode() + b"\n")
                else:
                    group, start, stop = piece
                    pacsv.write_csv(groups.get(source, group).slice(start, stop - start), handle, options)

    # ---- reading -------------------------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.final.exists() or bool(self.parts())

    def iter_tables(self, committed: set[str] | None = None) -> Iterator[pa.Table]:
        """The final file and parts as Arrow tables, filtered to `committed` runs when given."""
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        from balloonsim.experiment import arrow

        tables: list[pa.Table] = []
        if self.final.exists() and not _is_link(self.final):
            if self.format == "parquet":
                tables.append(pq.read_table(self.final))
            else:
                with open(open_fd(self.final, os.O_RDONLY), "rb") as handle:
                    tables.append(
                        pacsv.read_csv(handle, convert_options=pacsv.ConvertOptions(column_types=_id_types()))
                    )
        tables += [pq.read_table(p) for p in self.parts()]
        for table in tables:
            if committed is not None:
                table = table.filter(pc.is_in(table.column("run_id"), value_set=arrow.strings(sorted(committed))))
            yield table


class _RowGroups:
    """Decoded row groups of the merge's sources, each with exactly `schema`'s columns, the last ROW_GROUPS_CACHED
    kept: a merge in design order reads each source mostly in sequence (runs are handed out in design order), so
    memory stays bounded by a few row groups however large the files."""

    def __init__(self, files: list, schema: pa.Schema) -> None:
        self._files = files
        self._schema = schema
        self._cache: collections.OrderedDict[tuple[int, int], pa.Table] = collections.OrderedDict()

    def get(self, source: int, group: int) -> pa.Table:
        key = (source, group)
        table = self._cache.get(key)
        if table is None:
            table = conform(self._files[source].read_row_group(group), self._schema)
            self._cache[key] = table
            if len(self._cache) > ROW_GROUPS_CACHED:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return table


def _keyed_pieces(sources: list[Path], position: dict[str, int]) -> list[tuple[int, int, int, int, int]]:
    """Each run's rows in each row group of `sources`: (its place in design order, source, row group, first row,
    row after the last). Runs not in `position` come after every run that is, in the order found."""
    import numpy as np
    import pyarrow.parquet as pq

    late = len(position)
    pieces = []
    for source, path in enumerate(sources):
        ids = pq.ParquetFile(path, read_dictionary=["run_id"])
        for group in range(ids.num_row_groups):
            column = ids.read_row_group(group, columns=["run_id"]).column("run_id").combine_chunks()
            codes = _codes(column.indices)
            if not len(codes):
                continue
            starts = np.concatenate(([0], np.flatnonzero(codes[1:] != codes[:-1]) + 1))
            stops = np.append(starts[1:], len(codes))
            names = column.dictionary.to_pylist()
            for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
                pieces.append((position.get(names[codes[start]], late), source, group, start, stop))
    return pieces


def _codes(indices: pa.Array):
    """A dictionary array's indices (no nulls) as numpy integers, read from its buffer: pyarrow's `to_numpy`
    loads pandas, which the runner never needs."""
    import numpy as np

    dtype = np.dtype(f"int{indices.type.bit_width}")
    return np.frombuffer(indices.buffers()[1], dtype=dtype, count=len(indices), offset=indices.offset * dtype.itemsize)


def _pieces(sources: list[Path], position: dict[str, int]) -> list[tuple[int, int, int, int]]:
    """(source, row group, first row, row after the last) of every run's rows, in design order."""
    return [piece[1:] for piece in sorted(_keyed_pieces(sources, position))]


def _csv_runs(path: Path, header: list[str], position: dict[str, int]) -> list[tuple[tuple, tuple[int, int]]]:
    """The byte ranges of a CSV file's runs (consecutive lines of one run id), each with its sort key: its place
    in design order, then ahead of every part (0), then its place in the file."""
    key_at = header.index("run_id")
    late = len(position)
    runs: list[tuple[tuple, tuple[int, int]]] = []
    current, begin, end = None, 0, 0
    for offset, next_offset, cells in data_lines(path):
        if cells[key_at] != current:
            if current is not None:
                runs.append(((position.get(current, late), 0, begin), (begin, offset)))
            current, begin = cells[key_at], offset
        end = next_offset
    if current is not None:
        runs.append(((position.get(current, late), 0, begin), (begin, end)))
    return runs


def _id_types() -> dict[str, pa.DataType]:
    """Run ids read from CSV as text, whatever they look like."""
    import pyarrow as pa

    return {"run_id": pa.string()}


__all__ = ["CorruptPart", "PartDataset", "concat", "conform", "write_atomically"]

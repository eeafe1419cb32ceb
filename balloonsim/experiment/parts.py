"""Per-run tables (time series, events) staged as immutable Parquet parts, merged into one file at the end.

A Parquet file cannot be appended to after a crash (its footer would be missing), so while a batch runs each
flush writes a new part `<name>.parts/part-NNNNNN.parquet` (temporary name, fsync, rename: a part is whole or
absent).  Parts are written *before* the rows of their runs are committed to runs.csv, so a committed run
always has its table; on resume, parts are filtered to committed runs, which drops the tables of runs that
will be retried.  `finalize` merges the previous final file (if any) and the parts into `<name>.parquet` or
`<name>.csv` under a small journal, so a crash during the merge never loses or duplicates a run:

1. write `<final>.tmp`;  2. write the journal `<name>.merge.json` naming the parts merged;
3. `os.replace` the final file;  4. delete those parts;  5. delete the journal.

Recovery: journal and `.tmp` both present -> the merge did not happen (drop both); journal alone -> it did
(delete the parts it names).  Readers therefore see each run exactly once: in the final file, or during a
batch through `iter_tables(committed)`, which filters parts to committed runs.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from balloonsim.experiment.csvlog import complete_lines, format_line, fsync_dir, parse_line, write_atomically

PART_RE = re.compile(r"^part-(\d{6,})\.parquet$")
FORMATS = ("parquet", "csv")


def concat(tables: Iterable[pa.Table]) -> pa.Table:
    """Tables with possibly different columns as one, missing columns null, types widened where needed."""
    return pa.concat_tables(list(tables), promote_options="permissive")


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns, in order, nulls where it has none."""
    columns = [
        table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


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
        self._next = None

    # ---- writing during a batch -------------------------------------------------------------------------

    def parts(self) -> list[Path]:
        if not self.parts_dir.is_dir():
            return []
        return sorted(p for p in self.parts_dir.iterdir() if PART_RE.match(p.name))

    def write_part(self, tables: list[pa.Table]) -> Path | None:
        """Durably write one part holding `tables` (one or more runs); None when there is nothing to write."""
        tables = [t for t in tables if t is not None and t.num_rows]
        if not tables:
            return None
        if self._next is None:
            self.parts_dir.mkdir(parents=True, exist_ok=True)
            numbers = [int(PART_RE.match(p.name).group(1)) for p in self.parts()]
            self._next = max(numbers, default=-1) + 1
        path = self.parts_dir / f"part-{self._next:06d}.parquet"
        self._next += 1
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(concat(tables), tmp)
        fsync_dir(tmp)
        os.replace(tmp, path)
        fsync_dir(self.parts_dir)
        return path

    # ---- recovery ------------------------------------------------------------------------------------------

    def recover(self, committed: set[str]) -> None:
        """Undo what a crash left half done; keep only the tables of committed runs."""
        tmp = self.final.with_name(self.final.name + ".tmp")
        if self.journal.exists():
            if tmp.exists():
                tmp.unlink()
            else:
                merged = json.loads(self.journal.read_text())["parts"]
                for name in merged:
                    (self.parts_dir / name).unlink(missing_ok=True)
            self.journal.unlink()
        elif tmp.exists():
            tmp.unlink()
        if self.parts_dir.is_dir():
            for stale in self.parts_dir.glob("*.tmp"):
                stale.unlink()
        for part in self.parts():
            ids = pq.read_table(part, columns=["run_id"]).column("run_id")
            keep = pc.is_in(ids, value_set=pa.array(sorted(committed), pa.string()))
            if pc.all(keep).as_py():
                continue
            if not pc.any(keep).as_py():
                part.unlink()
                continue
            table = pq.read_table(part).filter(keep)
            staged = part.with_name(part.name + ".tmp")
            pq.write_table(table, staged)
            fsync_dir(staged)
            os.replace(staged, part)
        if self.parts_dir.is_dir():
            fsync_dir(self.parts_dir)

    # ---- the final file ------------------------------------------------------------------------------------

    def finalize(self) -> None:
        """Merge the final file and all parts into a new final file; remove the parts."""
        parts = self.parts()
        if not parts:
            if self.parts_dir.is_dir():
                self.parts_dir.rmdir()
            return
        tmp = self.final.with_name(self.final.name + ".tmp")
        if self.format == "parquet":
            self._merge_parquet(parts, tmp)
        else:
            self._merge_csv(parts, tmp)
        fsync_dir(tmp)
        write_atomically(self.journal, [json.dumps({"parts": [p.name for p in parts]})])
        os.replace(tmp, self.final)
        fsync_dir(self.directory)
        for part in parts:
            part.unlink()
        if not any(self.parts_dir.iterdir()):
            self.parts_dir.rmdir()
        self.journal.unlink()

    def _merge_parquet(self, parts: list[Path], tmp: Path) -> None:
        sources = ([self.final] if self.final.exists() else []) + parts
        schema = pa.unify_schemas([pq.read_schema(p) for p in sources], promote_options="permissive")
        schema = schema.remove_metadata()
        with pq.ParquetWriter(tmp, schema) as writer:
            for source in sources:
                for batch in pq.ParquetFile(source).iter_batches():
                    writer.write_table(conform(pa.Table.from_batches([batch]), schema))

    def _merge_csv(self, parts: list[Path], tmp: Path) -> None:
        old_header = None
        if self.final.exists():
            first = next(complete_lines(self.final), None)
            old_header = parse_line(first) if first else None
        columns = list(old_header or [])
        schemas = [pq.read_schema(p) for p in parts]
        for schema in schemas:
            columns += [name for name in schema.names if name not in columns]
        padding = "," * (len(columns) - len(old_header or []))
        target = pa.unify_schemas(schemas, promote_options="permissive")
        target = pa.schema([target.field(c) if c in target.names else pa.field(c, pa.string()) for c in columns])
        with open(tmp, "wb") as handle:
            handle.write(format_line(columns).encode())
            if old_header is not None:
                for number, line in enumerate(complete_lines(self.final)):
                    if number:
                        handle.write((line[:-1] + padding + "\n").encode())
            options = pacsv.WriteOptions(include_header=False)
            for part in parts:
                for batch in pq.ParquetFile(part).iter_batches():
                    pacsv.write_csv(conform(pa.Table.from_batches([batch]), target), handle, options)

    # ---- reading -------------------------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.final.exists() or bool(self.parts())

    def iter_tables(self, committed: set[str] | None = None) -> Iterator[pa.Table]:
        """The final file and parts as Arrow tables, filtered to `committed` runs when given."""
        if self.final.exists():
            if self.format == "parquet":
                tables = [pq.read_table(self.final)]
            else:
                tables = [pacsv.read_csv(self.final, convert_options=_csv_strings_for_ids())]
        else:
            tables = []
        tables += [pq.read_table(p) for p in self.parts()]
        for table in tables:
            if committed is not None:
                table = table.filter(pc.is_in(table.column("run_id"), value_set=pa.array(sorted(committed))))
            yield table


def _csv_strings_for_ids() -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(column_types={"run_id": pa.string()})


def remove_all(directory: Path, name: str) -> None:
    """Delete every file of dataset `name` in `directory` (for --force)."""
    for fmt in FORMATS:
        for suffix in ("", ".tmp"):
            (directory / f"{name}.{fmt}{suffix}").unlink(missing_ok=True)
    (directory / f"{name}.merge.json").unlink(missing_ok=True)
    parts = directory / f"{name}.parts"
    if parts.is_dir():
        for p in parts.iterdir():
            p.unlink()
        parts.rmdir()


__all__ = ["PartDataset", "concat", "conform", "remove_all", "write_atomically"]

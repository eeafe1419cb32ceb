"""Append-only CSV files that survive SIGKILL: a row is either wholly on disk or not at all.

Rows are appended as complete `\\n`-terminated lines in a single `write` followed by `fsync`, and no cell ever
contains a line break, so after a crash the file is a header, whole rows, and at most one torn last line.
`recover` drops the torn line, keeps the last wanted row per key and rewrites the file atomically (temporary
file + `os.replace`), so readers never see a half-written file either.

Nothing here follows a symbolic link: files are opened with O_NOFOLLOW and temporary files are created with a
fresh name (O_CREAT|O_EXCL, `tempfile.mkstemp`), so a link planted in a results directory cannot redirect a
write elsewhere; `os.replace` replaces a link itself, never its target.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from balloonsim.errors import UserError

TMP_SUFFIX = ".tmp"


def open_fd(path: Path, flags: int, mode: int = 0o644) -> int:
    """os.open that never follows a symbolic link at `path` (a link there is bad input, reported as such)."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError(
                f"{path} is a symbolic link; balloonsim does not follow links in a results directory"
            ) from None
        raise


def open_text(path: Path) -> IO[str]:
    """A regular file opened for reading, without following a link."""
    return os.fdopen(open_fd(path, os.O_RDONLY), encoding="utf-8", newline="")


def new_temporary(path: Path) -> tuple[int, Path]:
    """A fresh file beside `path` (`<name>.<random>.tmp`, created O_EXCL, mode 0644): whatever lies at a fixed
    temporary name, link or file, is never written through."""
    fd, name = tempfile.mkstemp(prefix=path.name + ".", suffix=TMP_SUFFIX, dir=path.parent)
    os.fchmod(fd, 0o644)
    return fd, Path(name)


def remove_temporaries(directory: Path, names: Iterable[str]) -> None:
    """Delete what an interrupted writer left: `<name>.*.tmp` (and the old fixed `<name>.tmp`) for each name; a
    link is removed itself, never followed."""
    names = list(names)
    wanted = tuple(f"{name}." if not name.endswith(".") else name for name in names)
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            if entry.name.startswith(wanted) and entry.name.endswith(TMP_SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)


def format_cell(value: Any) -> str:
    """One text per value, the same on every executor: floats by repr, tables and lists as canonical JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict | list | tuple):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    else:
        text = str(value)
    return " ".join(text.splitlines()) if ("\n" in text or "\r" in text) else text


def format_line(cells: Sequence[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([format_cell(cell) for cell in cells])
    return buffer.getvalue()


def parse_line(line: str) -> list[str]:
    return next(csv.reader([line.rstrip("\n")]))


def fsync_dir(path: Path) -> None:
    """fsync a directory (or a file: opened read-only, fsync works on either)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def complete_lines(path: Path) -> Iterator[str]:
    """The file's whole lines; a torn last line (no `\\n`) is left out."""
    with open_text(path) as handle:
        for line in handle:
            if line.endswith("\n"):
                yield line


def read_header(path: Path) -> list[str] | None:
    for line in complete_lines(path):
        return parse_line(line)
    return None


def recover_header(path: Path) -> list[str] | None:
    """The header, None for a missing file (a link or an unreadable file is reported)."""
    return read_header(path) if os.path.lexists(path) else None


def write_atomically(path: Path, lines: Iterator[str] | Sequence[str]) -> None:
    """Replace `path` with `lines` so that a crash leaves either the old or the new file."""
    fd, tmp = new_temporary(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            for line in lines:
                handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def data_lines(path: Path) -> Iterator[tuple[int, int, list[str]]]:
    """Each whole line of a CSV file after its header: where it starts and ends (byte offsets) and its cells; a
    torn last line (no newline) is left out."""
    with open(open_fd(path, os.O_RDONLY), "rb") as handle:
        handle.readline()
        while True:
            offset = handle.tell()
            raw = handle.readline()
            if not raw.endswith(b"\n"):
                return
            yield offset, offset + len(raw), parse_line(raw.decode("utf-8"))


def rewrite_rows(path: Path, columns: Sequence[str], order: Iterable[str], key: str = "run_id") -> None:
    """Rewrite a CSV file with `columns` (cells moved by column name, empty where new) and its rows in `order`
    of `key` (rows not named there follow in file order), atomically.

    Only the byte offset of each row is held in memory, never the rows, so it works for files of any length.
    """
    header = read_header(path)
    if header is None:
        return
    key_at = header.index(key)
    take = [header.index(c) if c in header else None for c in columns]
    offsets: dict[str, int] = {}
    for offset, _, cells in data_lines(path):
        if len(cells) == len(header):
            offsets[cells[key_at]] = offset

    def lines() -> Iterator[str]:
        yield format_line(columns)
        with open(open_fd(path, os.O_RDONLY), "rb") as handle:

            def row_at(offset: int) -> str:
                handle.seek(offset)
                cells = parse_line(handle.readline().decode("utf-8"))
                return format_line(["" if i is None else cells[i] for i in take])

            for rid in order:
                offset = offsets.pop(rid, None)
                if offset is not None:
                    yield row_at(offset)
            for offset in sorted(offsets.values()):
                yield row_at(offset)

    write_atomically(path, lines())


def recover(path: Path, key: str, keep: Callable[[dict[str, str]], bool]) -> tuple[list[str] | None, set[str]]:
    """Rewrite `path` with its header and, per `key` value, only the last whole row that `keep` accepts.

    Returns the header (None when the file has none) and the set of kept keys.
    """
    if not os.path.lexists(path):
        return None, set()
    header = read_header(path)
    if header is None:
        path.unlink()
        return None, set()
    last: dict[str, int] = {}
    for number, line in enumerate(complete_lines(path)):
        if number == 0:
            continue
        cells = parse_line(line)
        if len(cells) != len(header):
            continue
        row = dict(zip(header, cells, strict=True))
        if keep(row):
            last[row[key]] = number
    wanted = set(last.values())

    def kept() -> Iterator[str]:
        for number, line in enumerate(complete_lines(path)):
            if number == 0 or number in wanted:
                yield line

    write_atomically(path, kept())
    return header, set(last)


class CsvLog:
    """An open append-only CSV file; `append` commits whole rows durably."""

    def __init__(self, path: Path, columns: Sequence[str]):
        self.path = path
        self.columns = list(columns)
        existing = read_header(path) if path.exists() else None
        if existing is not None and existing != self.columns:
            raise ValueError(f"{path}: header {existing} differs from {self.columns}")
        self._fd = open_fd(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        if existing is None:
            os.ftruncate(self._fd, 0)
            self._write(format_line(self.columns))

    def _write(self, text: str) -> None:
        data = text.encode("utf-8")
        while data:
            written = os.write(self._fd, data)
            data = data[written:]
        os.fsync(self._fd)

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Commit rows (dicts keyed by column; missing cells are empty) with one write and one fsync."""
        if rows:
            self._write("".join(format_line([row.get(col) for col in self.columns]) for row in rows))

    def add_columns(self, names: Sequence[str]) -> None:
        """Widen the file: new columns go last and existing rows get empty cells (rewritten atomically)."""
        names = [name for name in dict.fromkeys(names) if name not in self.columns]
        if not names:
            return
        os.close(self._fd)
        self._fd = -1  # an interrupt below must not leave a closed descriptor to close again
        padding = "," * len(names)
        new_header = format_line(self.columns + names)

        def widened() -> Iterator[str]:
            yield new_header
            for number, line in enumerate(complete_lines(self.path)):
                if number:
                    yield line[:-1] + padding + "\n"

        try:
            write_atomically(self.path, widened())
            self.columns += names
        finally:
            self._fd = open_fd(self.path, os.O_WRONLY | os.O_APPEND)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

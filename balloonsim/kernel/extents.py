"""Sets of page frame numbers as sorted, disjoint [start, end) extents.

The model never keeps an array per page: a block's backing, its exposed pages and its
withheld holes are each an `Extents`, so cost grows with fragments, not with bytes.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator

from balloonsim.units import align_up


class Extents:
    """A set of integers stored as merged half-open intervals."""

    __slots__ = ("_starts", "_ends")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()):
        self._starts: list[int] = []
        self._ends: list[int] = []
        for start, end in ranges:
            self.add(start, end)

    @classmethod
    def span(cls, start: int, end: int) -> Extents:
        ext = cls()
        if end > start:
            ext._starts.append(start)
            ext._ends.append(end)
        return ext

    def copy(self) -> Extents:
        ext = Extents()
        ext._starts = self._starts.copy()
        ext._ends = self._ends.copy()
        return ext

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return zip(self._starts, self._ends, strict=True)

    def __len__(self) -> int:
        return len(self._starts)

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Extents) and list(self) == list(other)

    def __repr__(self) -> str:
        inner = ", ".join(f"{s:#x}-{e:#x}" for s, e in self)
        return f"Extents({inner})"

    @property
    def total(self) -> int:
        return sum(e - s for s, e in self)

    def add(self, start: int, end: int) -> int:
        """Add [start, end); returns how many values were new."""
        if end <= start:
            return 0
        new = (end - start) - self.count(start, end)
        i = bisect_left(self._ends, start)  # first extent that ends at or after start
        j = bisect_right(self._starts, end)  # extents [i, j) touch or overlap
        if i < j:
            start = min(start, self._starts[i])
            end = max(end, self._ends[j - 1])
        self._starts[i:j] = [start]
        self._ends[i:j] = [end]
        return new

    def remove(self, start: int, end: int) -> int:
        """Remove [start, end); returns how many values were present."""
        if end <= start or not self._starts:
            return 0
        removed = self.count(start, end)
        if not removed:
            return 0
        i = bisect_right(self._ends, start)
        j = bisect_left(self._starts, end)
        new_s: list[int] = []
        new_e: list[int] = []
        if i < j:
            if self._starts[i] < start:
                new_s.append(self._starts[i])
                new_e.append(start)
            if self._ends[j - 1] > end:
                new_s.append(end)
                new_e.append(self._ends[j - 1])
        self._starts[i:j] = new_s
        self._ends[i:j] = new_e
        return removed

    def count(self, start: int, end: int) -> int:
        """How many values of [start, end) are in the set."""
        if end <= start or not self._starts:
            return 0
        i = bisect_right(self._ends, start)
        n = 0
        while i < len(self._starts) and self._starts[i] < end:
            n += min(end, self._ends[i]) - max(start, self._starts[i])
            i += 1
        return n

    def covers(self, start: int, end: int) -> bool:
        return self.count(start, end) == end - start

    def first_missing(self, start: int, end: int) -> int | None:
        """The lowest value of [start, end) not in the set, or None."""
        pos = start
        i = bisect_right(self._ends, start)
        while pos < end:
            if i < len(self._starts) and self._starts[i] <= pos:
                pos = self._ends[i]
                i += 1
            else:
                return pos
        return None

    def clip(self, start: int, end: int) -> Extents:
        """The part of the set inside [start, end)."""
        out = Extents()
        i = bisect_right(self._ends, start)
        while i < len(self._starts) and self._starts[i] < end:
            out._starts.append(max(start, self._starts[i]))
            out._ends.append(min(end, self._ends[i]))
            i += 1
        return out

    def complement(self, start: int, end: int) -> Extents:
        """[start, end) minus the set."""
        out = Extents()
        pos = start
        for s, e in self.clip(start, end):
            if s > pos:
                out._starts.append(pos)
                out._ends.append(s)
            pos = e
        if pos < end:
            out._starts.append(pos)
            out._ends.append(end)
        return out

    def aligned_units(self, unit: int) -> int:
        """How many naturally aligned `unit`-sized chunks lie wholly inside the set."""
        n = 0
        for s, e in self:
            first = align_up(s, unit)
            last = (e // unit) * unit
            if last > first:
                n += (last - first) // unit
        return n

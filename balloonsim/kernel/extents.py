"""Sets of page frame numbers as sorted, disjoint [start, end) extents.

The model never keeps an array per page: a block's backing, its exposed pages and its
withheld holes are each an `Extents`, so cost grows with fragments, not with bytes. Most of them
hold one extent (a fully backed block, its memmap, its pages in the buddy allocator): that one is
kept as two integers, and two lists exist only once a second extent does, so that a guest of
131,072 blocks (16 TiB in 128 MiB blocks) does not carry half a million small lists.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator

from balloonsim.units import align_up


class Extents:
    """A set of integers stored as merged half-open intervals."""

    # none or one extent: [_lo, _hi) (empty when _hi <= _lo) and no lists; two or more: _starts and _ends
    __slots__ = ("_lo", "_hi", "_starts", "_ends")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()):
        self._lo = 0
        self._hi = 0
        self._starts: list[int] | None = None
        self._ends: list[int] | None = None
        for start, end in ranges:
            self.add(start, end)

    @classmethod
    def span(cls, start: int, end: int) -> Extents:
        ext = cls()
        if end > start:
            ext._lo = start
            ext._hi = end
        return ext

    def copy(self) -> Extents:
        ext = Extents()
        if self._starts is None or self._ends is None:
            ext._lo = self._lo
            ext._hi = self._hi
        else:
            ext._starts = self._starts.copy()
            ext._ends = self._ends.copy()
        return ext

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self._starts is None or self._ends is None:
            return iter(((self._lo, self._hi),) if self._hi > self._lo else ())
        return zip(self._starts, self._ends, strict=True)

    def __len__(self) -> int:
        if self._starts is None:
            return 1 if self._hi > self._lo else 0
        return len(self._starts)

    def __bool__(self) -> bool:
        return self._starts is not None or self._hi > self._lo

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Extents) and list(self) == list(other)

    def __repr__(self) -> str:
        inner = ", ".join(f"{s:#x}-{e:#x}" for s, e in self)
        return f"Extents({inner})"

    @property
    def total(self) -> int:
        if self._starts is None:
            return max(0, self._hi - self._lo)
        return sum(e - s for s, e in self)

    # -- the two forms ---------------------------------------------------------------------------------------
    def _lists(self) -> tuple[list[int], list[int]]:
        """The extents as two lists, the form with room for more than one (taken from here on)."""
        if self._starts is None or self._ends is None:
            one = self._hi > self._lo
            self._starts = [self._lo] if one else []
            self._ends = [self._hi] if one else []
            self._lo = self._hi = 0
        return self._starts, self._ends

    def _pack(self) -> None:
        """Back to two integers when at most one extent is left."""
        starts, ends = self._starts, self._ends
        if starts is not None and ends is not None and len(starts) <= 1:
            self._lo, self._hi = (starts[0], ends[0]) if starts else (0, 0)
            self._starts = self._ends = None

    # -- changes ---------------------------------------------------------------------------------------------
    def add(self, start: int, end: int) -> int:
        """Add [start, end); returns how many values were new."""
        if end <= start:
            return 0
        if self._starts is None:
            lo, hi = self._lo, self._hi
            if hi <= lo:
                self._lo, self._hi = start, end
                return end - start
            if start <= hi and end >= lo:  # overlaps or touches the one extent: still one
                self._lo, self._hi = min(lo, start), max(hi, end)
                return (end - start) - max(0, min(end, hi) - max(start, lo))
        new = (end - start) - self.count(start, end)
        starts, ends = self._lists()
        i = bisect_left(ends, start)  # first extent that ends at or after start
        j = bisect_right(starts, end)  # extents [i, j) touch or overlap
        if i < j:
            start = min(start, starts[i])
            end = max(end, ends[j - 1])
        starts[i:j] = [start]
        ends[i:j] = [end]
        self._pack()
        return new

    def remove(self, start: int, end: int) -> int:
        """Remove [start, end); returns how many values were present."""
        if end <= start:
            return 0
        removed = self.count(start, end)
        if not removed:
            return 0
        if self._starts is None:
            lo, hi = self._lo, self._hi
            if lo < start and end < hi:  # a hole in the middle: two extents
                self._starts, self._ends = [lo, end], [start, hi]
                self._lo = self._hi = 0
            elif lo < start:
                self._hi = start
            elif end < hi:
                self._lo = end
            else:
                self._lo = self._hi = 0
            return removed
        starts, ends = self._lists()
        i = bisect_right(ends, start)
        j = bisect_left(starts, end)
        new_s: list[int] = []
        new_e: list[int] = []
        if i < j:
            if starts[i] < start:
                new_s.append(starts[i])
                new_e.append(start)
            if ends[j - 1] > end:
                new_s.append(end)
                new_e.append(ends[j - 1])
        starts[i:j] = new_s
        ends[i:j] = new_e
        self._pack()
        return removed

    # -- queries ---------------------------------------------------------------------------------------------
    def count(self, start: int, end: int) -> int:
        """How many values of [start, end) are in the set."""
        if end <= start:
            return 0
        if self._starts is None or self._ends is None:
            return max(0, min(end, self._hi) - max(start, self._lo))
        starts, ends = self._starts, self._ends
        i = bisect_right(ends, start)
        n = 0
        while i < len(starts) and starts[i] < end:
            n += min(end, ends[i]) - max(start, starts[i])
            i += 1
        return n

    def covers(self, start: int, end: int) -> bool:
        return self.count(start, end) == end - start

    def first_missing(self, start: int, end: int) -> int | None:
        """The lowest value of [start, end) not in the set, or None."""
        if start >= end:
            return None
        if self._starts is None or self._ends is None:
            if self._lo <= start < self._hi:
                return self._hi if self._hi < end else None
            return start
        starts, ends = self._starts, self._ends
        pos = start
        i = bisect_right(ends, start)
        while pos < end:
            if i < len(starts) and starts[i] <= pos:
                pos = ends[i]
                i += 1
            else:
                return pos
        return None

    def clip(self, start: int, end: int) -> Extents:
        """The part of the set inside [start, end) (nothing of an empty window)."""
        if self._starts is None or self._ends is None:
            return Extents.span(max(start, self._lo), min(end, self._hi))
        out = Extents()
        if end <= start:
            return out
        starts, ends = self._starts, self._ends
        out_s, out_e = out._lists()
        i = bisect_right(ends, start)
        while i < len(starts) and starts[i] < end:
            out_s.append(max(start, starts[i]))
            out_e.append(min(end, ends[i]))
            i += 1
        out._pack()
        return out

    def complement(self, start: int, end: int) -> Extents:
        """[start, end) minus the set."""
        out = Extents()
        out_s, out_e = out._lists()
        pos = start
        for s, e in self.clip(start, end):
            if s > pos:
                out_s.append(pos)
                out_e.append(s)
            pos = e
        if pos < end:
            out_s.append(pos)
            out_e.append(end)
        out._pack()
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

"""Extents (balloonsim.kernel.extents), the sets of pfns every block keeps, against Python's own sets: on random
adds and removes every query answers what the set answers, whether the extents are none, one (kept as two
integers) or many (kept as lists)."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given, settings

from balloonsim.kernel.extents import Extents

N = 40
RANGES = st.tuples(st.integers(0, N), st.integers(0, N))


def as_runs(values: set[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for v in sorted(values):
        if runs and runs[-1][1] == v:
            runs[-1] = (runs[-1][0], v + 1)
        else:
            runs.append((v, v + 1))
    return runs


def check(ext: Extents, model: set[int], start: int, end: int) -> None:
    runs = as_runs(model)
    assert list(ext) == runs and len(ext) == len(runs) and bool(ext) == bool(model)
    assert ext.total == len(model)
    assert ext == Extents(runs) and ext == ext.copy()
    window = set(range(start, end))
    assert ext.count(start, end) == len(model & window)
    assert ext.covers(start, end) == (window <= model)
    missing = sorted(window - model)
    assert ext.first_missing(start, end) == (missing[0] if missing else None)
    assert list(ext.clip(start, end)) == as_runs(model & window)
    assert list(ext.complement(start, end)) == as_runs(window - model)
    for unit in (1, 4, 8):
        whole = sum(1 for u in range(0, N + 1, unit) if set(range(u, u + unit)) <= model)
        assert ext.aligned_units(unit) == whole


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.booleans(), RANGES), max_size=30), RANGES)
def test_extents_answer_what_a_set_answers(ops, window):
    ext, model = Extents(), set()
    start, end = min(window), max(window)
    for adding, (a, b) in ops:
        s, e = min(a, b), max(a, b) + (a % 3 == 0)  # now and then an empty range
        if adding:
            assert ext.add(s, e) == len(set(range(s, e)) - model)
            model |= set(range(s, e))
        else:
            assert ext.remove(s, e) == len(set(range(s, e)) & model)
            model -= set(range(s, e))
        check(ext, model, start, end)


def test_a_span_is_one_extent_and_a_hole_makes_two():
    ext = Extents.span(0, 512)
    assert list(ext) == [(0, 512)] and ext.total == 512
    assert ext.remove(100, 200) == 100
    assert list(ext) == [(0, 100), (200, 512)]
    assert ext.add(100, 200) == 100
    assert list(ext) == [(0, 512)]
    assert Extents.span(5, 5) == Extents() and not Extents.span(7, 3)

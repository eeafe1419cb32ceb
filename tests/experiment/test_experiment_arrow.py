"""The runner's Arrow arrays, made from buffers, are the arrays `pyarrow.array()` makes of the same input."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from balloonsim.experiment import arrow


@pytest.mark.parametrize(
    "values",
    [
        np.array([1, -2, 3]),
        np.array([1.5, np.nan, -0.0, np.inf]),
        np.array([True, False, True, True, False, False, True, False, True]),  # more than one byte of bits
        np.array([], dtype=np.int64),
        np.arange(10)[::3],  # not contiguous
        np.array([3, 7], np.uint32),
    ],
)
def test_numeric_arrays_match_pyarrow(values):
    made, expected = arrow.numeric(values), pa.array(values)
    made.validate(full=True)
    assert made.type == expected.type and made.null_count == 0
    assert repr(made.to_pylist()) == repr(expected.to_pylist())  # NaN and -0.0 kept as written


def test_text_arrays_match_pyarrow():
    words = ["a", "", "ünïcödé", "x" * 300]
    for large in (False, True):
        kind = pa.large_string() if large else pa.string()
        made = arrow.strings(words, large=large)
        made.validate(full=True)
        assert made.equals(pa.array(words, kind)) and made.type == kind
    assert arrow.strings([]).equals(pa.array([], pa.string()))
    assert arrow.repeated("run-1", 3).equals(pa.array(["run-1"] * 3, pa.string()))
    assert arrow.repeated("run-1", 0).equals(pa.array([], pa.string()))


def test_anything_else_is_refused():
    with pytest.raises(TypeError):
        arrow.numeric(np.array(["a", "b"]))
    with pytest.raises(TypeError):
        arrow.numeric(np.zeros((2, 2)))

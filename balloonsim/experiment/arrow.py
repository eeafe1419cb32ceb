"""Arrow arrays made straight from their buffers, so that the runner never imports pandas.

`pyarrow.array()` asks, for every input, whether it is a pandas object, and the first time it asks it imports
pandas (about 0.25 s of CPU). The runner writes Parquet but has no other use for pandas, and on two cores that
import is taken from the workers (or, before the first run, from the batch itself). A run's columns are numpy
arrays of numbers or lists of text, whose Arrow layout is simple: numbers are their numpy buffer, bools a bitmap,
text an offsets buffer and the UTF-8 bytes. The arrays are the ones `pyarrow.array()` makes of the same input
(no nulls; NaN stays a float value), so the files are the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa


def numeric(values: np.ndarray) -> pa.Array:
    """A 1-d numpy array of ints, unsigned ints, floats or bools as the Arrow array of the same type."""
    values = np.ascontiguousarray(values)
    if values.ndim != 1 or values.dtype.kind not in "biuf":
        raise TypeError(f"not a 1-d numeric array: {values.dtype} {values.shape}")
    if values.dtype.kind == "b":
        bits = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])
    values = values.astype(values.dtype.newbyteorder("="), copy=False)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def strings(values: Sequence[str], large: bool = False) -> pa.Array:
    """Python strings (no None) as an Arrow string array (`large`: 64-bit offsets, `large_string`)."""
    encoded = [value.encode("utf-8") for value in values]
    offsets = np.zeros(len(encoded) + 1, np.int64 if large else np.int32)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    kind = pa.large_string() if large else pa.string()
    return pa.Array.from_buffers(kind, len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])


def repeated(text: str, count: int) -> pa.Array:
    """`text` `count` times, as an Arrow string array."""
    data = text.encode("utf-8")
    offsets = np.arange(count + 1, dtype=np.int32) * len(data)
    return pa.Array.from_buffers(pa.string(), count, [None, pa.py_buffer(offsets), pa.py_buffer(data * count)])

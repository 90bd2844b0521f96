"""numpy views of pyarrow arrays and back, through their buffers.

pyarrow's own conversions (``Array.to_numpy``, ``pa.array``, Python scalars given to a compute
function) import pandas whenever it is installed, which costs a short run about 0.3 s; these
helpers never do. They handle what the loader produces: fixed-width values and UTF-8 text.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_NUMPY_KINDS = ((pa.types.is_signed_integer, "i"), (pa.types.is_unsigned_integer, "u"), (pa.types.is_floating, "f"),
                (pa.types.is_timestamp, "i"))


def numpy_view(array: pa.Array) -> np.ndarray:
    """The values of a fixed-width array, without copying (a null's slot holds an arbitrary value).
    Timestamps come as int64 counts of their unit."""
    width = array.type.bit_width // 8
    kind = next(kind for test, kind in _NUMPY_KINDS if test(array.type))
    return np.frombuffer(array.buffers()[1], dtype=f"<{kind}{width}", count=len(array), offset=array.offset * width)


def valid(array: pa.Array) -> np.ndarray:
    """True where the array holds a value, False where it is null."""
    bitmap = array.buffers()[0]
    if bitmap is None:
        return np.ones(len(array), dtype=bool)
    bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), bitorder="little")
    return bits[array.offset:array.offset + len(array)].astype(bool)


def from_numpy(values: np.ndarray) -> pa.Array:
    """A pyarrow array over a numpy array of int32/int64/uint64/float64 values (no copy when contiguous)."""
    values = np.ascontiguousarray(values)
    kinds = {"i4": pa.int32(), "i8": pa.int64(), "u8": pa.uint64(), "f8": pa.float64()}
    return pa.Array.from_buffers(kinds[values.dtype.str[1:]], len(values), [None, pa.py_buffer(values)])


def text_buffers(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A text array's offsets (int64, one more than its length) and bytes, without copying the bytes."""
    offset_type = np.int64 if pa.types.is_large_string(text.type) else np.int32
    offsets = np.frombuffer(text.buffers()[1], dtype=offset_type)[text.offset:text.offset + len(text) + 1]
    data = text.buffers()[2]
    return offsets.astype(np.int64), np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)


def with_nulls(text: pa.Array, null: np.ndarray) -> pa.Array:
    """``text`` (no nulls yet) with the rows where ``null`` is true made null."""
    present = np.zeros(text.offset + len(text), dtype=bool)  # the bitmap counts from the buffers' start
    present[text.offset:] = ~np.asarray(null, dtype=bool)
    bitmap = pa.py_buffer(np.packbits(present, bitorder="little"))
    return pa.Array.from_buffers(text.type, len(text), [bitmap, *text.buffers()[1:]], offset=text.offset)

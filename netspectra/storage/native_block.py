"""ClickHouse Native-format column bytes built from Arrow columns with numpy, for the server writer.

asynch serialises an insert value by value in Python (~70 k rows/s for flow_metrics' 12 columns
on this machine, the slowest writer by far); the Native format is what the server reads anyway:
fixed-width numbers are their little-endian bytes, a String is a varint length then the bytes, a
Nullable(T) is one null-map byte per row then T's column with defaults in the NULL rows. So each
column here is one numpy expression over the Arrow buffers the rows builder already made.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from netspectra.errors import StorageError
from netspectra.storage.rows import as_arrow

_FIXED: dict[str, np.dtype[Any]] = {
    "UInt8": np.dtype("<u1"),
    "UInt16": np.dtype("<u2"),
    "UInt32": np.dtype("<u4"),
    "UInt64": np.dtype("<u8"),
    "DateTime": np.dtype("<u4"),
}
_ONE_BYTE_LENGTH = 128


def _valid(array: pa.Array) -> npt.NDArray[np.bool_]:
    if array.null_count == 0:
        return np.ones(len(array), bool)
    return np.asarray(array.is_valid())


def _fixed(array: pa.Array, dtype: np.dtype[Any]) -> bytes:
    if array.null_count == len(array):
        return bytes(len(array) * dtype.itemsize)
    values = array.fill_null(0) if array.null_count else array
    return np.ascontiguousarray(values.to_numpy(zero_copy_only=False), dtype=dtype).tobytes()


def _strings(array: pa.Array) -> bytes:
    rows = len(array)
    if array.null_count == rows:
        return bytes(rows)  # every value the empty string: one zero length byte each
    if array.null_count:
        array = array.fill_null(b"" if pa.types.is_binary(array.type) else "")
    offsets = np.frombuffer(array.buffers()[1], np.int32, rows + 1, array.offset * 4)
    start, stop = int(offsets[0]), int(offsets[-1])
    data = (
        np.frombuffer(array.buffers()[2], np.uint8, stop - start, start)
        if stop > start
        else np.empty(0, np.uint8)
    )
    lengths = np.diff(offsets)
    if rows and int(lengths.max()) >= _ONE_BYTE_LENGTH:  # a long value: varints of several bytes
        varints = bytearray()
        for value in array.to_pylist():
            encoded = value if isinstance(value, bytes) else value.encode()  # State is binary
            length = len(encoded)
            while length >= 0x80:
                varints.append(length & 0x7F | 0x80)
                length >>= 7
            varints.append(length)
            varints += encoded
        return bytes(varints)
    from netspectra.storage.text_kernels import native_strings_kernel

    # read-only views, whatever made the buffers: one kernel signature (the one warmed up)
    data.flags.writeable = False
    offsets.flags.writeable = False
    out = np.empty(rows + data.shape[0], np.uint8)
    native_strings_kernel(out, data, offsets)
    return out.tobytes()


def encode_column(name: str, type_name: str, values: Any) -> bytes:
    """The Native bytes of column ``values`` (Arrow, or a list from an old spool) as ``type_name``."""
    array = as_arrow(name, values)
    nullable = type_name.startswith("Nullable(") and type_name.endswith(")")
    inner = type_name[9:-1] if nullable else type_name
    prefix = b""
    if nullable:
        prefix = np.logical_not(_valid(array)).astype(np.uint8).tobytes()
    if inner in _FIXED:
        return prefix + _fixed(array, _FIXED[inner])
    if inner == "String":
        return prefix + _strings(array)
    raise StorageError(f"column {name}: no Native encoding for type {type_name}")

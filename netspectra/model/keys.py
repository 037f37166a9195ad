"""Flow keys as fixed-width byte rows, shared by exact tables and sketches.

A task's key is the concatenation, in the task's configured field order, of each field's
big-endian bytes: addresses 16 (IPv4 mapped), ports 2, protocol 1. One kernel builds a
whole batch of keys (:func:`netspectra.model.key_kernel.build_keys`); tables and sketches then
hash and compare rows of one ``uint8`` matrix. This module holds no kernel, so the sketch
protocol (and with it ``config check``) can use it without importing numba.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from netspectra.model.fields import KeyField, address_text

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

FIELD_WIDTH: dict[KeyField, int] = {
    KeyField.SRC_IP: 16,
    KeyField.DST_IP: 16,
    KeyField.SRC_PORT: 2,
    KeyField.DST_PORT: 2,
    KeyField.PROTOCOL: 1,
}


def key_width(fields: Sequence[KeyField]) -> int:
    """Bytes in one key row for these fields (0 for no fields)."""
    return sum(FIELD_WIDTH[field] for field in fields)


def decode_key(row: bytes | npt.NDArray[np.uint8], fields: Sequence[KeyField]) -> dict[KeyField, str | int]:
    """The field values of one key row: addresses as text, ports and protocol as ints."""
    data = bytes(row)
    values: dict[KeyField, str | int] = {}
    offset = 0
    for field in fields:
        width = FIELD_WIDTH[field]
        chunk = data[offset : offset + width]
        if width == 16:
            values[field] = address_text(chunk)
        else:
            values[field] = int.from_bytes(chunk, "big")
        offset += width
    return values


def flow_text(row: bytes | npt.NDArray[np.uint8], fields: Sequence[KeyField]) -> str:
    """The Go reference's flow string: field values joined by single spaces, e.g. ``"10.0.0.1 443"``."""
    return " ".join(str(value) for value in decode_key(row, fields).values())

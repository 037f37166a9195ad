"""Flow keys as fixed-width byte rows, shared by exact tables and sketches.

A task's key is the concatenation, in the task's configured field order, of each field's
big-endian bytes: addresses 16 (IPv4 mapped), ports 2, protocol 1. One kernel builds a
whole batch of keys; tables and sketches then hash and compare rows of one ``uint8`` matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba as nb
import numpy as np
import numpy.typing as npt

from netspectra.model.fields import KeyField, address_text
from netspectra.model.packets import PacketColumns

FIELD_WIDTH: dict[KeyField, int] = {
    KeyField.SRC_IP: 16,
    KeyField.DST_IP: 16,
    KeyField.SRC_PORT: 2,
    KeyField.DST_PORT: 2,
    KeyField.PROTOCOL: 1,
}
#: Field codes passed to the kernel (order of the KeyField enum).
_FIELD_CODE = {field: code for code, field in enumerate(KeyField)}


def key_width(fields: Sequence[KeyField]) -> int:
    """Bytes in one key row for these fields (0 for no fields)."""
    return sum(FIELD_WIDTH[field] for field in fields)


@nb.njit(cache=True, nogil=True)
def _build_keys(src_ip, dst_ip, src_port, dst_port, protocol, codes, out):  # type: ignore[no-untyped-def]
    count = out.shape[0]
    for row in range(count):
        offset = 0
        for code in codes:
            if code == 0:
                for j in range(16):
                    out[row, offset + j] = src_ip[row, j]
                offset += 16
            elif code == 1:
                for j in range(16):
                    out[row, offset + j] = dst_ip[row, j]
                offset += 16
            elif code == 2:
                out[row, offset] = src_port[row] >> 8
                out[row, offset + 1] = src_port[row] & 0xFF
                offset += 2
            elif code == 3:
                out[row, offset] = dst_port[row] >> 8
                out[row, offset + 1] = dst_port[row] & 0xFF
                offset += 2
            else:
                out[row, offset] = protocol[row]
                offset += 1


def build_keys(
    batch: PacketColumns, fields: Sequence[KeyField], out: npt.NDArray[np.uint8] | None = None
) -> npt.NDArray[np.uint8]:
    """The ``(len(batch), key_width(fields))`` key matrix of a batch (into ``out`` when given)."""
    width = key_width(fields)
    if out is None or out.shape[0] < len(batch) or out.shape[1] != width:
        out = np.empty((len(batch), width), np.uint8)
    else:
        out = out[: len(batch)]
    if width:
        codes = np.array([_FIELD_CODE[field] for field in fields], np.int64)
        _build_keys(batch.src_ip, batch.dst_ip, batch.src_port, batch.dst_port, batch.protocol, codes, out)
    return out


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

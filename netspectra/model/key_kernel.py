"""The kernel that builds a batch's key matrix (the layout is :mod:`netspectra.model.keys`').

Apart from :mod:`netspectra.model.keys` because it imports numba, which what only reads keys
(the sketch protocol, ``config check``) should not pay for.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from netspectra.jit import njit
from netspectra.model.fields import KeyField
from netspectra.model.keys import key_width
from netspectra.model.packets import PacketColumns

#: Field codes passed to the kernel (order of the KeyField enum).
_FIELD_CODE = {field: code for code, field in enumerate(KeyField)}


@njit(cache=True, nogil=True)
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

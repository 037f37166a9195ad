"""The numba kernels of the sketch state format (:mod:`netspectra.engine.sketch.protocol`, version 2).

Version 2 stores each array *byte-shuffled*: byte 0 of every element, then byte 1 of every
element, and so on, so the high bytes of counters (mostly zero) sit together and zstd packs them
to almost nothing; unsigned counters are also stored in the narrowest width that holds their
largest value. Shuffling a 1 MB count_min state is one pass here; numpy's transpose copy of the
same (``(n, 8)`` to ``(8, n)`` bytes) took 0.5 ms, as long as the zstd decompression itself.

Apart from the protocol module so that importing a sketch class (``config check``, ``plugins
list``) does not import numba; the protocol imports this module when it encodes or decodes.
"""

from __future__ import annotations

import numpy as np

from netspectra.jit import njit


@njit(cache=True, nogil=True)
def shuffle_into(values, stored, out):  # type: ignore[no-untyped-def]
    """Write the low ``stored`` bytes of each of ``values`` (flat unsigned) into ``out`` as planes:
    ``out[j * n + i]`` is byte ``j`` (little-endian) of ``values[i]``. Plane by plane, so each
    loop is one SIMD pass (element by element it was 3x slower)."""
    n = values.shape[0]
    for j in range(stored):
        shift = values.dtype.type(8 * j)
        plane = out[j * n : (j + 1) * n]
        for i in range(n):
            plane[i] = np.uint8((values[i] >> shift) & 0xFF)


@njit(cache=True, nogil=True)
def unshuffle_into(planes, stored, out):  # type: ignore[no-untyped-def]
    """The inverse of :func:`shuffle_into`: ``out`` (flat unsigned, at least ``stored`` bytes wide)
    gets each element's ``stored`` low bytes from the planes, the bytes above them zero."""
    n = out.shape[0]
    first = planes[:n]
    for i in range(n):
        out[i] = first[i]
    for j in range(1, stored):
        shift = out.dtype.type(8 * j)
        plane = planes[j * n : (j + 1) * n]
        for i in range(n):
            out[i] |= out.dtype.type(plane[i]) << shift


@njit(cache=True, nogil=True)
def unshuffle_add(planes, stored, out):  # type: ignore[no-untyped-def]
    """``out += `` the values :func:`unshuffle_into` would write (a merge sums stored counters
    without a fresh array per state: writing 1 MB of new memory per state cost more than the sum)."""
    n = out.shape[0]
    for j in range(stored):
        shift = out.dtype.type(8 * j)
        plane = planes[j * n : (j + 1) * n]
        for i in range(n):
            out[i] += out.dtype.type(plane[i]) << shift

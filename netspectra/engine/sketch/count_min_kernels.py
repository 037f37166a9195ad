"""The numba kernels of :mod:`netspectra.engine.sketch.count_min` (the algorithm is described there).

Apart from the class so that importing :class:`~netspectra.engine.sketch.count_min.CountMin`,
which ``config check`` and ``plugins list`` do to validate its parameters, does not import numba
(~0.25 s); the class imports this module when a sketch is built.
"""

from __future__ import annotations

import numpy as np

from netspectra.engine.sketch.murmur3 import hash_words_into, splitmix64_next
from netspectra.jit import njit, numba_only

# numba-only helpers: imported when a kernel is compiled (not at all with the ahead-of-time module)
prefetch_row = numba_only("netspectra.engine.sketch.intrinsics", "prefetch_row")


@njit(inline="always", nogil=True)
def _next_random(state):  # type: ignore[no-untyped-def]
    """(new state, 32 random bits): the high half of one splitmix64 step."""
    state, z = splitmix64_next(state)
    return state, z >> np.uint64(32)


_PREFETCH_AHEAD = 16
"""Packets between a bucket's prefetch and its update (8-16 measured best; 0 costs ~10 %)."""


@njit(cache=True, nogil=True)
def update_row(words, sizes, buckets, cells, variant, thresholds, state):  # type: ignore[no-untyped-def]
    """Apply every packet of a batch to one row; returns the row's new random state.

    ``buckets[i]`` is packet i's bucket in this row (from :func:`hash_buckets`); ``cells[b]``
    is one bucket, laid out contiguously (64 bytes, one cache line, for 16-byte keys):
    ``[byte-cell key words | byte counter | count-cell key words | packet counter |
    linear packets | linear bytes]``.
    Rows are independent, so a row is one tight loop over the batch whose bucket state is
    half the sketch (stays in L2), and the bucket a few packets ahead is prefetched.
    """
    n = words.shape[0]
    nwords = words.shape[1]
    size_at = nwords
    key_at = nwords + 1
    count_at = 2 * nwords + 1
    linear_at = 2 * nwords + 2
    last = np.uint64(thresholds.shape[0] - 1)
    for i in range(n):
        if i + _PREFETCH_AHEAD < n:
            prefetch_row(cells, buckets[i + _PREFETCH_AHEAD])
        bucket = buckets[i]
        size = sizes[i]
        cells[bucket, linear_at] += np.uint64(1)
        cells[bucket, linear_at + 1] += size
        # --- byte cell ---
        held = cells[bucket, size_at]
        if held == 0:
            cells[bucket, size_at] = size
            for j in range(nwords):
                cells[bucket, j] = words[i, j]
        else:
            same = True
            for j in range(nwords):
                if cells[bucket, j] != words[i, j]:
                    same = False
                    break
            if same:
                cells[bucket, size_at] = held + size
            else:
                vote = True
                if variant == 1:
                    if size == 0:
                        vote = False
                    else:
                        ratio = held // size
                        if ratio > last:
                            ratio = last
                        state, draw = _next_random(state)
                        vote = draw < thresholds[ratio]
                if vote:
                    if size > held:
                        cells[bucket, size_at] = size
                        for j in range(nwords):
                            cells[bucket, j] = words[i, j]
                    else:
                        cells[bucket, size_at] = held - size
        # --- packet cell ---
        held = cells[bucket, count_at]
        if held == 0:
            cells[bucket, count_at] = 1
            for j in range(nwords):
                cells[bucket, key_at + j] = words[i, j]
        else:
            same = True
            for j in range(nwords):
                if cells[bucket, key_at + j] != words[i, j]:
                    same = False
                    break
            if same:
                cells[bucket, count_at] = held + 1
            elif variant == 0:
                cells[bucket, count_at] = held - 1
                if held == 1:
                    for j in range(nwords):
                        cells[bucket, key_at + j] = words[i, j]
            else:
                index = held if held < last else last
                state, draw = _next_random(state)
                if draw < thresholds[index]:
                    if held == 1:
                        cells[bucket, count_at] = 1
                        for j in range(nwords):
                            cells[bucket, key_at + j] = words[i, j]
                    else:
                        cells[bucket, count_at] = held - 1
    return state


@njit(cache=True, nogil=True)
def update_rows(words, sizes, buckets, cells, variant, thresholds, states):  # type: ignore[no-untyped-def]
    """Every row, one after the other, in the calling thread."""
    for r in range(cells.shape[0]):
        states[r] = update_row(words, sizes, buckets[r], cells[r], variant, thresholds, states[r])


@njit(cache=True, nogil=True)
def linear_minimum(words, nbytes, seeds, linear, out):  # type: ignore[no-untyped-def]
    """``out[i]``: the smallest linear counter over rows of key i's buckets (Count-Min's upper bound)."""
    width = np.uint32(linear.shape[1])
    buckets = np.empty(seeds.shape[0], np.uint32)
    for i in range(words.shape[0]):
        hash_words_into(words, i, nbytes, seeds, buckets)
        best = linear[0, buckets[0] % width]
        for r in range(1, seeds.shape[0]):
            value = linear[r, buckets[r] % width]
            if value < best:
                best = value
        out[i] = best


@njit(cache=True, nogil=True)
def update_row_weighted(words, sizes, weights, buckets, cells, variant, thresholds, state):  # type: ignore[no-untyped-def]
    """:func:`update_row` for flow records: record i counts ``weights[i]`` packets and ``sizes[i]`` bytes.

    An added entry point, not a change of the packet loop. One vote per record: the same key adds,
    another key subtracts or, when it outweighs the held count, takes the cell. In the Go variant
    the packet cell then holds exactly what N consecutive packets of the record's flow would leave
    (tested); the byte cell takes the record's bytes as the packet path takes a packet's, and the
    decay variant draws once per record with the held/weight ratio, as its byte cell does.
    """
    n = words.shape[0]
    nwords = words.shape[1]
    size_at = nwords
    key_at = nwords + 1
    count_at = 2 * nwords + 1
    linear_at = 2 * nwords + 2
    last = np.uint64(thresholds.shape[0] - 1)
    for i in range(n):
        bucket = buckets[i]
        cells[bucket, linear_at] += weights[i]
        cells[bucket, linear_at + 1] += sizes[i]
        for cell in range(2):
            at = size_at if cell == 0 else count_at
            first = 0 if cell == 0 else key_at
            amount = sizes[i] if cell == 0 else weights[i]
            held = cells[bucket, at]
            if held == 0:
                cells[bucket, at] = amount
                for j in range(nwords):
                    cells[bucket, first + j] = words[i, j]
                continue
            same = True
            for j in range(nwords):
                if cells[bucket, first + j] != words[i, j]:
                    same = False
                    break
            if same:
                cells[bucket, at] = held + amount
                continue
            vote = True
            if variant == 1:
                if amount == 0:
                    vote = False
                else:
                    ratio = held // amount
                    if ratio > last:
                        ratio = last
                    state, draw = _next_random(state)
                    vote = draw < thresholds[ratio]
            if vote:
                if amount > held:
                    # Go's packet cell, one packet at a time, ends with the newcomer holding what is
                    # left after the held count is voted down; its byte cell takes the whole size
                    left = amount - held if cell == 1 and variant == 0 else amount
                    cells[bucket, at] = left
                    for j in range(nwords):
                        cells[bucket, first + j] = words[i, j]
                else:
                    cells[bucket, at] = held - amount
    return state

"""The numba kernels of :mod:`netspectra.engine.sketch.spread_sketch` (the algorithm is described there).

Apart from the class so that importing :class:`~netspectra.engine.sketch.spread_sketch.SpreadSketch`
(``config check``, ``plugins list``) does not import numba; the class imports this module when a
sketch counts. Every spread_sketch kernel lives here, next to the kernels it calls (numba's
on-disk cache only notices edits of a function's own file).
"""

from __future__ import annotations

import numpy as np

from netspectra.engine.sketch.murmur3 import absorb_block, finish, hash_words_into, mix_block, word_block
from netspectra.jit import njit, numba_only

# numba-only helpers: imported when a kernel is compiled (not at all with the ahead-of-time module)
clz32 = numba_only("netspectra.engine.sketch.intrinsics", "clz32")
prefetch_row = numba_only("netspectra.engine.sketch.intrinsics", "prefetch_row")

EMPTY = np.uint64(0xFFFFFFFFFFFFFFFF)
"""Priority of a bucket no pair has reached (every real priority is smaller or equal)."""
_SETMAX = 0.875
"""A level at most this full is accurate enough to be the MRB's base (linear counting load ~2)."""
_PREFETCH_AHEAD = 8


@njit(inline="always", nogil=True)
def _popcount(word):  # type: ignore[no-untyped-def]
    word = word - ((word >> np.uint64(1)) & np.uint64(0x5555555555555555))
    word = (word & np.uint64(0x3333333333333333)) + ((word >> np.uint64(2)) & np.uint64(0x3333333333333333))
    word = (word + (word >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (word * np.uint64(0x0101010101010101)) >> np.uint64(56)


@njit(cache=True, nogil=True)
def update(flow_words, pair_words, pair_bytes, pair_seeds, buckets, cells, key_words, levels, level_words):  # type: ignore[no-untyped-def]
    """Apply one batch; ``cells`` is ``(depth * width, stride)``, ``buckets[r, i]`` already offset by
    ``r * width``. A bucket is ``[priority | key words | level 0 bitmap | level 1 | ...]``."""
    n = flow_words.shape[0]
    depth = buckets.shape[0]
    nblocks = pair_bytes >> 2
    rest = pair_bytes & 3
    seed_a = np.uint32(pair_seeds[0])
    seed_b = np.uint32(pair_seeds[1])
    bits = np.uint32(level_words * 64)
    top = np.uint32(levels - 1)
    first_bitmap = 1 + key_words
    for i in range(n):
        if i + _PREFETCH_AHEAD < n:
            for r in range(depth):
                prefetch_row(cells, buckets[r, i + _PREFETCH_AHEAD])
        h_a = seed_a
        h_b = seed_b
        for block in range(nblocks):
            mixed = mix_block(word_block(pair_words, i, block))
            h_a = absorb_block(h_a, mixed)
            h_b = absorb_block(h_b, mixed)
        if rest:
            mixed = mix_block(word_block(pair_words, i, nblocks) & np.uint32((1 << (8 * rest)) - 1))
            h_a ^= mixed
            h_b ^= mixed
        h_a = finish(h_a, pair_bytes)
        h_b = finish(h_b, pair_bytes)
        level = clz32(h_a)
        if level > top:
            level = top
        bit = h_b % bits
        word = first_bitmap + np.int64(level) * level_words + np.int64(bit >> np.uint32(6))
        mask = np.uint64(1) << np.uint64(bit & np.uint32(63))
        priority = (np.uint64(h_a) << np.uint64(32)) | np.uint64(h_b)
        for r in range(depth):
            b = buckets[r, i]
            cells[b, word] |= mask
            held = cells[b, 0]
            if priority > held:
                continue
            replace = priority < held
            if not replace:  # a tie (or the same flow): the larger key wins, whatever the order
                for j in range(key_words):
                    if flow_words[i, j] != cells[b, 1 + j]:
                        replace = flow_words[i, j] > cells[b, 1 + j]
                        break
            if replace:
                cells[b, 0] = priority
                for j in range(key_words):
                    cells[b, 1 + j] = flow_words[i, j]


@njit(inline="always", nogil=True)
def _bucket_spread(cells, b, key_words, levels, level_words):  # type: ignore[no-untyped-def]
    """The MRB estimate of bucket ``b`` (see the module docstring)."""
    bits = level_words * 64
    first_bitmap = 1 + key_words
    base = levels - 1
    for level in range(levels - 1):
        ones = 0
        for w in range(level_words):
            ones += _popcount(cells[b, first_bitmap + level * level_words + w])
        if ones <= _SETMAX * bits:
            base = level
            break
    total = 0.0
    for level in range(base, levels):
        ones = 0
        for w in range(level_words):
            ones += _popcount(cells[b, first_bitmap + level * level_words + w])
        zeros = bits - ones
        total += bits * np.log(bits / max(zeros, 1))
    return total * 2.0**base


@njit(cache=True, nogil=True)
def query(words, nbytes, seeds, width, cells, key_words, levels, level_words, out):  # type: ignore[no-untyped-def]
    """``out[i]``: the smallest bucket estimate over key i's rows, rounded."""
    buckets = np.empty(seeds.shape[0], np.uint32)
    for i in range(words.shape[0]):
        hash_words_into(words, i, nbytes, seeds, buckets)
        best = np.inf
        for r in range(seeds.shape[0]):
            spread = _bucket_spread(cells, r * width + buckets[r] % width, key_words, levels, level_words)
            if spread < best:
                best = spread
        out[i] = np.uint64(best + 0.5)


@njit(cache=True, nogil=True)
def merge(cells, other, key_words):  # type: ignore[no-untyped-def]
    """OR of the bitmaps, smaller priority (with its key; larger key on a tie): the update's own rule."""
    for b in range(cells.shape[0]):
        for w in range(1 + key_words, cells.shape[1]):
            cells[b, w] |= other[b, w]
        held = cells[b, 0]
        incoming = other[b, 0]
        replace = incoming < held
        if incoming == held:
            for j in range(key_words):
                if other[b, 1 + j] != cells[b, 1 + j]:
                    replace = other[b, 1 + j] > cells[b, 1 + j]
                    break
        if replace:
            for j in range(1 + key_words):
                cells[b, j] = other[b, j]

"""The numba kernels of :mod:`netspectra.engine.sketch.super_spread` (the algorithm is described there).

Apart from the class so that importing
:class:`~netspectra.engine.sketch.super_spread.SuperSpread`, which ``config check`` and
``plugins list`` do to validate its parameters, does not import numba (~0.25 s); the class
imports this module when a sketch is built.
"""

from __future__ import annotations

import numpy as np

from netspectra.engine.sketch.murmur3 import absorb_block, finish, mix_block, splitmix64_next, word_block
from netspectra.jit import njit, numba_only

# numba-only helpers: imported when a kernel is compiled (not at all with the ahead-of-time module)
clz32 = numba_only("netspectra.engine.sketch.intrinsics", "clz32")
prefetch_row = numba_only("netspectra.engine.sketch.intrinsics", "prefetch_row")

_PREFETCH_AHEAD = 16
"""Packets between a register's prefetch and its test (the registers, 1 MB per row at 2^13 x 128,
mostly live in L3)."""


@njit(inline="always", nogil=True)
def _sample(geometric_hash, index_hash, m, max_value):  # type: ignore[no-untyped-def]
    """``(value << 16) | register index`` of one pair in one row (value = clz + 1, capped)."""
    value = clz32(geometric_hash) + np.uint32(1)
    if value > max_value:
        value = max_value
    m32 = np.uint32(m)
    power_of_two = (m32 & (m32 - np.uint32(1))) == 0
    index = index_hash & (m32 - np.uint32(1)) if power_of_two else index_hash % m32
    return (value << np.uint32(16)) | index


@njit(cache=True, nogil=True)
def pair_samples(pair_words, pair_bytes, pair_seeds, m, max_value, out):  # type: ignore[no-untyped-def]
    """``out[r, i]``: packet i's sampler register index and value in row r (see :func:`_sample`).

    Row r hashes the pair with ``pair_seeds[2r]`` (geometric value) and ``pair_seeds[2r + 1]``
    (register index). Two rows (four seeds) are hashed per pass over the key, their running
    hashes kept in registers and the block mixing shared.
    """
    n = pair_words.shape[0]
    depth = pair_seeds.shape[0] // 2
    nblocks = pair_bytes >> 2
    rest = pair_bytes & 3
    for first in range(0, depth, 2):
        pair = first + 1 < depth
        seed_a = np.uint32(pair_seeds[2 * first])
        seed_b = np.uint32(pair_seeds[2 * first + 1])
        seed_c = np.uint32(pair_seeds[2 * first + 2]) if pair else np.uint32(0)
        seed_d = np.uint32(pair_seeds[2 * first + 3]) if pair else np.uint32(0)
        for i in range(n):
            h_a = seed_a
            h_b = seed_b
            h_c = seed_c
            h_d = seed_d
            for block in range(nblocks):
                mixed = mix_block(word_block(pair_words, i, block))
                h_a = absorb_block(h_a, mixed)
                h_b = absorb_block(h_b, mixed)
                h_c = absorb_block(h_c, mixed)
                h_d = absorb_block(h_d, mixed)
            if rest:
                tail = word_block(pair_words, i, nblocks) & np.uint32((1 << (8 * rest)) - 1)
                mixed = mix_block(tail)
                h_a ^= mixed
                h_b ^= mixed
                h_c ^= mixed
                h_d ^= mixed
            out[first, i] = _sample(finish(h_a, pair_bytes), finish(h_b, pair_bytes), m, max_value)
            if pair:
                out[first + 1, i] = _sample(finish(h_c, pair_bytes), finish(h_d, pair_bytes), m, max_value)


@njit(cache=True, nogil=True)
def update_row(  # type: ignore[no-untyped-def]
    flow_words, buckets, samples, keys, values, registers, probabilities, powers, max_value, thresholds, state
):
    """Apply one batch to one row (Go's Insert steps 2-4, see the module docstring); returns the
    row's random state. Most packets repeat a known pair and stop at the register test, so the
    register a few packets ahead is prefetched."""
    n = flow_words.shape[0]
    nwords = flow_words.shape[1]
    m = registers.shape[1]
    inv_m = 1.0 / m
    flat_registers = registers.reshape(-1)
    last = np.uint64(thresholds.shape[0] - 1)
    low16 = np.uint32(0xFFFF)
    for i in range(n):
        if i + _PREFETCH_AHEAD < n:
            ahead = i + _PREFETCH_AHEAD
            prefetch_row(flat_registers, np.int64(buckets[ahead]) * m + np.int64(samples[ahead] & low16))
        bucket = buckets[i]
        value = samples[i] >> np.uint32(16)
        index = samples[i] & low16
        old = np.uint32(registers[bucket, index])
        if value <= old:
            continue
        registers[bucket, index] = value
        p = probabilities[bucket]
        updated = p - powers[old] * inv_m
        if value < max_value:
            updated += powers[value] * inv_m
        probabilities[bucket] = updated
        if p <= 0.0:
            continue
        inverse = 1.0 / p
        votes = np.ceil(inverse)
        state, draw = splitmix64_next(state)
        if (draw >> np.uint64(11)) * (1.0 / 9007199254740992.0) >= inverse / votes:
            continue
        remaining = np.int64(votes)
        while remaining > 0:
            held = values[bucket]
            if held == 0:
                for j in range(nwords):
                    keys[bucket, j] = flow_words[i, j]
                values[bucket] = remaining
                break
            same = True
            for j in range(nwords):
                if keys[bucket, j] != flow_words[i, j]:
                    same = False
                    break
            if same:
                values[bucket] = held + remaining
                break
            position = np.uint64(held) if np.uint64(held) < last else last
            state, draw = splitmix64_next(state)
            if (draw >> np.uint64(32)) < thresholds[position]:
                values[bucket] = held - 1
            remaining -= 1
    return state


@njit(cache=True, nogil=True)
def update_rows(  # type: ignore[no-untyped-def]
    flow_words, buckets, samples, keys, values, registers, probabilities, powers, max_value, thresholds,
    states,
):  # fmt: skip
    """Every row, one after the other, in the calling thread."""
    for r in range(values.shape[0]):
        states[r] = update_row(
            flow_words, buckets[r], samples[r], keys[r], values[r], registers[r], probabilities[r],
            powers, max_value, thresholds, states[r],
        )  # fmt: skip

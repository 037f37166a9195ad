"""32-bit MurmurHash3 (x86_32), bit-for-bit the Go reference's ``statistic.MurmurHash3``.

The hash is an ``inline="always"`` numba function over one row of a key matrix, so a kernel's
per-packet loop pays no call or array-refcount cost; :func:`murmur3_rows` hashes a whole
matrix for Python callers (query, heavy-hitter recovery, tests).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from netspectra.jit import njit

_C1 = np.uint32(0xCC9E2D51)
_C2 = np.uint32(0x1B873593)


@njit(inline="always", nogil=True)
def _rotl32(value, shift):  # type: ignore[no-untyped-def]
    return np.uint32((value << np.uint32(shift)) | (value >> np.uint32(32 - shift)))


@njit(inline="always", nogil=True)
def murmur3_row(keys, row, seed):  # type: ignore[no-untyped-def]
    """MurmurHash3_x86_32 of ``keys[row, :]`` with ``seed`` (little-endian blocks, as Go reads them)."""
    length = keys.shape[1]
    h1 = np.uint32(seed)
    nblocks = length // 4
    for block in range(nblocks):
        base = block * 4
        k1 = (
            np.uint32(keys[row, base])
            | (np.uint32(keys[row, base + 1]) << np.uint32(8))
            | (np.uint32(keys[row, base + 2]) << np.uint32(16))
            | (np.uint32(keys[row, base + 3]) << np.uint32(24))
        )
        k1 = np.uint32(k1 * _C1)
        k1 = _rotl32(k1, 15)
        k1 = np.uint32(k1 * _C2)
        h1 ^= k1
        h1 = _rotl32(h1, 13)
        h1 = np.uint32(h1 * np.uint32(5) + np.uint32(0xE6546B64))
    tail = nblocks * 4
    rest = length - tail
    k1 = np.uint32(0)
    if rest == 3:
        k1 ^= np.uint32(keys[row, tail + 2]) << np.uint32(16)
    if rest >= 2:
        k1 ^= np.uint32(keys[row, tail + 1]) << np.uint32(8)
    if rest >= 1:
        k1 ^= np.uint32(keys[row, tail])
        k1 = np.uint32(k1 * _C1)
        k1 = _rotl32(k1, 15)
        k1 = np.uint32(k1 * _C2)
        h1 ^= k1
    h1 ^= np.uint32(length)
    h1 ^= h1 >> np.uint32(16)
    h1 = np.uint32(h1 * np.uint32(0x85EBCA6B))
    h1 ^= h1 >> np.uint32(13)
    h1 = np.uint32(h1 * np.uint32(0xC2B2AE35))
    h1 ^= h1 >> np.uint32(16)
    return h1


@njit(cache=True, nogil=True)
def _hash_rows(keys, seed, out):  # type: ignore[no-untyped-def]
    for row in range(keys.shape[0]):
        out[row] = murmur3_row(keys, row, seed)


def murmur3_rows(keys: npt.NDArray[np.uint8], seed: int) -> npt.NDArray[np.uint32]:
    """The hash of every row of a ``(n, width)`` uint8 key matrix."""
    matrix = np.ascontiguousarray(keys, dtype=np.uint8).reshape(keys.shape[0], -1)
    out = np.empty(matrix.shape[0], np.uint32)
    _hash_rows(matrix, np.uint32(seed & 0xFFFFFFFF), out)
    return out


def row_seeds(seed: int, count: int) -> npt.NDArray[np.uint32]:
    """``count`` fixed 32-bit seeds derived from one task seed (splitmix64), so every engine agrees.

    Go draws its row seeds at random per process; fixing them makes results reproducible and
    lets sketches built by different engines be merged.
    """
    out = np.empty(count, np.uint32)
    state = seed & 0xFFFFFFFFFFFFFFFF
    mask = 0xFFFFFFFFFFFFFFFF
    for index in range(count):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        z ^= z >> 31
        out[index] = z & 0xFFFFFFFF
    return out


@njit(inline="always", nogil=True)
def splitmix64_next(state):  # type: ignore[no-untyped-def]
    """One splitmix64 step: (new state, 64 random bits); the sketches' sampling draws.

    Shared like the murmur3 blocks: inlined into each calling kernel, so it must not change
    without clearing numba's cache (a cached caller does not see edits here).
    """
    state = np.uint64(state + np.uint64(0x9E3779B97F4A7C15))
    z = state
    z = np.uint64((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9))
    z = np.uint64((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB))
    z = z ^ (z >> np.uint64(31))
    return state, z


@njit(inline="always", nogil=True)
def mix_block(k1):  # type: ignore[no-untyped-def]
    """The seed-independent half of one MurmurHash3 block round (shared by every row's hash)."""
    k1 = np.uint32(k1 * _C1)
    k1 = _rotl32(k1, 15)
    return np.uint32(k1 * _C2)


@njit(inline="always", nogil=True)
def absorb_block(h1, mixed):  # type: ignore[no-untyped-def]
    """Fold one mixed block into a running hash."""
    h1 ^= mixed
    h1 = _rotl32(h1, 13)
    return np.uint32(h1 * np.uint32(5) + np.uint32(0xE6546B64))


@njit(inline="always", nogil=True)
def finish(h1, length):  # type: ignore[no-untyped-def]
    """Length fold and final avalanche."""
    h1 ^= np.uint32(length)
    h1 ^= h1 >> np.uint32(16)
    h1 = np.uint32(h1 * np.uint32(0x85EBCA6B))
    h1 ^= h1 >> np.uint32(13)
    h1 = np.uint32(h1 * np.uint32(0xC2B2AE35))
    h1 ^= h1 >> np.uint32(16)
    return h1


@njit(inline="always", nogil=True)
def word_block(words, row, block):  # type: ignore[no-untyped-def]
    """Block ``block`` (4 bytes, little-endian) of a key stored as little-endian uint64 words."""
    word = words[row, block >> 1]
    if block & 1:
        return np.uint32(word >> np.uint64(32))
    return np.uint32(word & np.uint64(0xFFFFFFFF))


@njit(inline="always", nogil=True)
def hash_words_into(words, row, nbytes, seeds, out):  # type: ignore[no-untyped-def]
    """MurmurHash3 of the first ``nbytes`` bytes of ``words[row]`` for every seed, one pass over the key.

    The block mixing does not depend on the seed, so it is computed once and folded into each
    seed's state: d hashes cost little more than one.
    """
    count = seeds.shape[0]
    for s in range(count):
        out[s] = seeds[s]
    nblocks = nbytes >> 2
    for block in range(nblocks):
        mixed = mix_block(word_block(words, row, block))
        for s in range(count):
            out[s] = absorb_block(out[s], mixed)
    rest = nbytes & 3
    if rest:
        tail = word_block(words, row, nblocks) & np.uint32((1 << (8 * rest)) - 1)
        mixed = mix_block(tail)
        for s in range(count):
            out[s] ^= mixed
    for s in range(count):
        out[s] = finish(out[s], nbytes)


def as_words(keys: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    """A key matrix as ``(n, ceil(width/8))`` little-endian uint64 words, zero-padded (no copy when aligned).

    Kernels compare and hash whole words instead of single bytes.
    """
    rows, width = keys.shape
    padded_width = max(8, -(-width // 8) * 8)
    if width == padded_width and keys.flags.c_contiguous:
        return keys.view("<u8")
    padded = np.zeros((rows, padded_width), np.uint8)
    padded[:, :width] = keys
    return padded.view("<u8")


@njit(inline="always", nogil=True)
def _tail_block(words, row, nbytes):  # type: ignore[no-untyped-def]
    """The zero-padded last partial block of a key (only called when ``nbytes % 4``)."""
    rest = nbytes & 3
    return word_block(words, row, nbytes >> 2) & np.uint32((1 << (8 * rest)) - 1)


@njit(cache=True, nogil=True)
def hash_buckets(words, nbytes, seeds, width, out):  # type: ignore[no-untyped-def]
    """``out[s, i] = murmur3(key i, seeds[s]) % width`` for a whole batch (a mask when width is 2^k).

    A pass of its own, before any bucket is touched, so the update kernels know every address
    ahead and can prefetch it. Seeds are taken two at a time with the block mixing shared and
    both running hashes in registers (an output array inside the loop would be re-read from
    memory after every store).
    """
    n = words.shape[0]
    depth = seeds.shape[0]
    nblocks = nbytes >> 2
    rest = nbytes & 3
    width32 = np.uint32(width)
    power_of_two = (width32 & (width32 - np.uint32(1))) == 0
    mask = width32 - np.uint32(1)
    for first in range(0, depth, 2):
        pair = first + 1 < depth
        seed_a = np.uint32(seeds[first])
        seed_b = np.uint32(seeds[first + 1]) if pair else np.uint32(0)
        for i in range(n):
            h_a = seed_a
            h_b = seed_b
            for block in range(nblocks):
                mixed = mix_block(word_block(words, i, block))
                h_a = absorb_block(h_a, mixed)
                h_b = absorb_block(h_b, mixed)
            if rest:
                mixed = mix_block(_tail_block(words, i, nbytes))
                h_a ^= mixed
                h_b ^= mixed
            h_a = finish(h_a, nbytes)
            out[first, i] = h_a & mask if power_of_two else h_a % width32
            if pair:
                h_b = finish(h_b, nbytes)
                out[first + 1, i] = h_b & mask if power_of_two else h_b % width32


@njit(cache=True, nogil=True)
def best_matching_value(words, nbytes, seeds, keys, values, out):  # type: ignore[no-untyped-def]
    """For each key row: the largest ``values[r, bucket]`` over rows whose cell holds exactly this key.

    The query side of every keyed-cell sketch (count_min's packet and byte cells, super_spread's
    counters): 0 when no row holds the flow. Not a hot path; one kernel serves them all.
    """
    width = np.uint32(values.shape[1])
    nwords = words.shape[1]
    buckets = np.empty(seeds.shape[0], np.uint32)
    for i in range(words.shape[0]):
        hash_words_into(words, i, nbytes, seeds, buckets)
        best = np.uint64(0)
        for r in range(seeds.shape[0]):
            bucket = buckets[r] % width
            same = True
            for j in range(nwords):
                if keys[r, bucket, j] != words[i, j]:
                    same = False
                    break
            if same and values[r, bucket] > best:
                best = values[r, bucket]
        out[i] = best

"""The numba MurmurHash3 against published vectors and a plain-Python transcription of the spec."""

from __future__ import annotations

import numba as nb
import numpy as np
import pytest

from netspectra.engine.sketch.intrinsics import clz32
from netspectra.engine.sketch.murmur3 import as_words, hash_buckets, murmur3_rows, row_seeds


def reference_murmur3(data: bytes, seed: int) -> int:
    """MurmurHash3_x86_32 written from the SMHasher reference, one byte string at a time."""
    mask = 0xFFFFFFFF
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h1 = seed & mask
    rounded = len(data) - len(data) % 4
    for offset in range(0, rounded, 4):
        k1 = int.from_bytes(data[offset : offset + 4], "little")
        k1 = (k1 * c1) & mask
        k1 = ((k1 << 15) | (k1 >> 17)) & mask
        k1 = (k1 * c2) & mask
        h1 ^= k1
        h1 = ((h1 << 13) | (h1 >> 19)) & mask
        h1 = (h1 * 5 + 0xE6546B64) & mask
    tail = data[rounded:]
    if tail:
        k1 = int.from_bytes(tail, "little")
        k1 = (k1 * c1) & mask
        k1 = ((k1 << 15) | (k1 >> 17)) & mask
        k1 = (k1 * c2) & mask
        h1 ^= k1
    h1 ^= len(data)
    h1 ^= h1 >> 16
    h1 = (h1 * 0x85EBCA6B) & mask
    h1 ^= h1 >> 13
    h1 = (h1 * 0xC2B2AE35) & mask
    h1 ^= h1 >> 16
    return h1


def matrix(data: bytes) -> np.ndarray:
    return np.frombuffer(data, np.uint8).reshape(1, -1)


@pytest.mark.parametrize(
    ("data", "seed", "expected"),
    [
        (b"", 0, 0),
        (b"", 1, 0x514E28B7),
        (b"hello", 0, 0x248BFA47),
        (b"The quick brown fox jumps over the lazy dog", 0x9747B28C, 0x2FA826CD),
    ],
)
def test_published_vectors(data: bytes, seed: int, expected: int) -> None:
    assert int(murmur3_rows(matrix(data).reshape(1, len(data)), seed)[0]) == expected


@pytest.mark.parametrize("width", [1, 2, 3, 4, 5, 16, 18, 35, 37])
def test_matches_reference_on_random_keys(width: int) -> None:
    rng = np.random.default_rng(width)
    keys = rng.integers(0, 256, size=(200, width), dtype=np.uint8)
    seed = int(rng.integers(0, 2**32))
    got = murmur3_rows(keys, seed).tolist()
    assert got == [reference_murmur3(row.tobytes(), seed) for row in keys]


def test_row_seeds_are_fixed_and_distinct() -> None:
    assert row_seeds(0, 4).tolist() == row_seeds(0, 4).tolist()
    assert len(set(row_seeds(7, 16).tolist())) == 16
    assert row_seeds(1, 2).tolist() != row_seeds(2, 2).tolist()


@pytest.mark.parametrize(
    ("key_width", "depth", "buckets"), [(16, 2, 8192), (37, 3, 1000), (5, 1, 7), (4, 4, 1)]
)
def test_hash_buckets_equals_reference_modulo_width(key_width: int, depth: int, buckets: int) -> None:
    """The batch hash pass (two seeds per pass, mask for 2^k widths) is Go's ``hash % width``."""
    rng = np.random.default_rng(key_width * 31 + depth)
    keys = rng.integers(0, 256, size=(300, key_width), dtype=np.uint8)
    seeds = row_seeds(key_width, depth)
    out = np.empty((depth, keys.shape[0]), np.uint32)
    hash_buckets(as_words(keys), key_width, seeds, buckets, out)
    for row, seed in enumerate(seeds.tolist()):
        assert out[row].tolist() == [reference_murmur3(key.tobytes(), seed) % buckets for key in keys]


def test_clz32_counts_leading_zero_bits() -> None:
    values = [0, 1, 2, 3, 0x80000000, 0x7FFFFFFF, 0xFFFFFFFF, 0x00010000, 0x0000FFFF]
    values += np.random.default_rng(3).integers(0, 2**32, size=200).tolist()
    got = _clz_all(np.array(values, np.uint32)).tolist()
    assert got == [32 - value.bit_length() for value in values]


@nb.njit
def _clz_all(values):  # type: ignore[no-untyped-def]
    out = np.empty(values.shape[0], np.uint32)
    for i in range(values.shape[0]):
        out[i] = clz32(values[i])
    return out

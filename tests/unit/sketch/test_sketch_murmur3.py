"""The numba MurmurHash3 against published vectors and a plain-Python transcription of the spec."""

from __future__ import annotations

import numpy as np
import pytest

from netspectra.engine.sketch.murmur3 import murmur3_rows, row_seeds


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

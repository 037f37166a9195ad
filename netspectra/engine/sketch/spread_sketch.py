"""``spread_sketch``: SpreadSketch (Tang, Huang, Lee, INFOCOM 2020) — mergeable super-spreaders.

Layout: ``depth`` rows x ``width`` buckets; each bucket holds a multiresolution bitmap (MRB:
``levels`` bitmaps of ``bits`` bits), a candidate flow key and that key's priority. Per packet:

1. the pair (flow key ‖ element key) is hashed twice (``h_a``, ``h_b``, 32 bits each); its MRB
   level is ``min(clz32(h_a), levels - 1)`` (level ``l`` gets a share ``2**-(l+1)`` of the
   pairs, the last level the rest) and its bit ``h_b % bits``;
2. in every row, the flow's bucket sets that bit, and the pair's priority ``h_a << 32 | h_b``
   replaces the bucket's if it is smaller (the paper keeps the largest leading-zero *level*;
   the full hash orders the same way and almost never ties). On a tie the larger key wins.

The state is then a function of the *set* of pairs seen, not of their order or repetition:
merging two sketches is OR of the bitmaps and min of the priorities (key with it), and the
merge of any split of a stream is bit for bit the sketch of the whole stream. That is what
super_spread (Go's algorithm, kept for compatibility) cannot offer.

A bucket's spread is the MRB estimate (Estan, Varghese, Fisk 2006): the first level whose
bitmap is at most 87.5 % full is the *base*; levels from the base up see a share ``2**-base``
of the pairs, each counted by linear counting, ``bits * ln(bits / zeros)``. A flow's spread is
the smallest estimate over its rows; the reported flows are the buckets' candidates whose
spread reaches ``count_thereshold``. Error: about ``1/sqrt(bits)`` (a level of 512 bits: ~4 %);
the largest spread an MRB tells apart is about ``bits * ln(bits) * 2**(levels - 1)`` (409 k at
512 x 8; more saturates at that value). The defaults (512 x 8 bits + key + priority, 536 bytes a
bucket) match the memory of Go's SuperSpread bucket (128 32-bit registers + key + counter).

Every kernel of this algorithm lives in this module (numba's on-disk cache only notices edits of
a function's own file; the murmur3 helpers it inlines are shared with the other sketches).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numba as nb
import numpy as np
import numpy.typing as npt
from pydantic import AliasChoices, Field

from netspectra.engine.sketch.intrinsics import clz32, prefetch_row
from netspectra.engine.sketch.murmur3 import (
    absorb_block,
    as_words,
    finish,
    hash_buckets,
    hash_words_into,
    mix_block,
    row_seeds,
    word_block,
)
from netspectra.engine.sketch.protocol import KeyMatrix, SketchAlgorithm, SketchBase, SketchParams
from netspectra.model.fields import KeyField
from netspectra.model.snapshot import HeavyHitter, HitterKind

_EMPTY = np.uint64(0xFFFFFFFFFFFFFFFF)
"""Priority of a bucket no pair has reached (every real priority is smaller or equal)."""
_SETMAX = 0.875
"""A level at most this full is accurate enough to be the MRB's base (linear counting load ~2)."""
_PREFETCH_AHEAD = 8


class SpreadSketchParams(SketchParams):
    """Parameters of a ``spread_sketch`` task (``count_thereshold`` spelled as Go's tasks spell it)."""

    width: int = Field(1 << 13, ge=1, le=1 << 24, description="buckets per row")
    depth: int = Field(2, ge=1, le=16, description="rows")
    count_thereshold: int = Field(
        4096,
        ge=1,
        validation_alias=AliasChoices("count_thereshold", "count_threshold", "threshold"),
        description="report flows with at least this many distinct elements",
    )
    bits: int = Field(512, ge=64, le=1 << 14, multiple_of=64, description="bits of each MRB level")
    levels: int = Field(8, ge=2, le=32, description="MRB levels (range ~ bits*ln(bits)*2**(levels-1))")
    seed: int = Field(0, ge=0, description="derives the hash seeds; equal seeds merge")


@nb.njit(inline="always", nogil=True)
def _popcount(word):  # type: ignore[no-untyped-def]
    word = word - ((word >> np.uint64(1)) & np.uint64(0x5555555555555555))
    word = (word & np.uint64(0x3333333333333333)) + ((word >> np.uint64(2)) & np.uint64(0x3333333333333333))
    word = (word + (word >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (word * np.uint64(0x0101010101010101)) >> np.uint64(56)


@nb.njit(cache=True, nogil=True)
def _update(flow_words, pair_words, pair_bytes, pair_seeds, buckets, cells, key_words, levels, level_words):  # type: ignore[no-untyped-def]
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


@nb.njit(inline="always", nogil=True)
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


@nb.njit(cache=True, nogil=True)
def _query(words, nbytes, seeds, width, cells, key_words, levels, level_words, out):  # type: ignore[no-untyped-def]
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


@nb.njit(cache=True, nogil=True)
def _merge(cells, other, key_words):  # type: ignore[no-untyped-def]
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


class SpreadSketch(SketchBase):
    """Super-spreaders whose states merge exactly across engines and epochs (see the module docstring)."""

    Params = SpreadSketchParams
    summary = "SpreadSketch: mergeable super-spreaders (MRB + candidate key per bucket; INFOCOM 2020)"
    mergeable = True
    state_name = "spread_sketch"

    def __init__(
        self,
        params: SketchParams,
        *,
        flow_fields: Sequence[KeyField],
        element_fields: Sequence[KeyField] = (),
    ) -> None:
        super().__init__(params, flow_fields=flow_fields, element_fields=element_fields)
        assert isinstance(params, SpreadSketchParams)
        self.p: SpreadSketchParams = params
        self.seeds = row_seeds(params.seed, params.depth)
        self.pair_seeds = row_seeds(params.seed ^ 0x5BD1E995, 2)
        self._level_words = params.bits // 64
        stride = 1 + self.key_words + params.levels * self._level_words
        self.cells = np.zeros((params.depth * params.width, stride), np.uint64)
        self.cells[:, 0] = _EMPTY
        self._offsets = (np.arange(params.depth, dtype=np.uint32) * np.uint32(params.width)).reshape(-1, 1)

    def insert(self, flow_keys: KeyMatrix, element_keys: KeyMatrix, sizes: npt.NDArray[np.uint64]) -> None:
        """Hash the flows (every row) and the pairs, then one pass over the batch; sizes are ignored."""
        n = flow_keys.shape[0]
        if n == 0:
            return
        flow_words = as_words(flow_keys)
        pairs = np.hstack((flow_keys, element_keys))
        buckets = np.empty((self.p.depth, n), np.uint32)
        hash_buckets(flow_words, flow_keys.shape[1], self.seeds, self.p.width, buckets)
        buckets += self._offsets
        _update(
            flow_words, as_words(pairs), pairs.shape[1], self.pair_seeds, buckets, self.cells,
            self.key_words, self.p.levels, self._level_words,
        )  # fmt: skip

    def query(self, flow_keys: KeyMatrix) -> dict[HitterKind, npt.NDArray[np.uint64]]:
        """Smallest MRB estimate over the flow's rows (an empty bucket estimates 0)."""
        out = np.zeros(flow_keys.shape[0], np.uint64)
        if flow_keys.shape[0]:
            _query(
                as_words(flow_keys), self.key_width, self.seeds, self.p.width, self.cells,
                self.key_words, self.p.levels, self._level_words, out,
            )  # fmt: skip
        return {HitterKind.SPREAD: out}

    def heavy_hitters(self) -> tuple[HeavyHitter, ...]:
        """The buckets' candidate flows whose spread reaches ``count_thereshold``, descending."""
        held = self.cells[:, 0] != _EMPTY
        if not held.any():
            return ()
        keys = self.cells[held, 1 : 1 + self.key_words].copy().view(np.uint8)[:, : self.key_width]
        unique = np.unique(keys, axis=0)
        spreads = self.query(unique)[HitterKind.SPREAD]
        picked = spreads >= self.p.count_thereshold
        return tuple(self.hitters_from(unique[picked], spreads[picked], HitterKind.SPREAD))

    def reset(self) -> None:
        self.cells.fill(0)
        self.cells[:, 0] = _EMPTY

    def merge(self, other: SketchAlgorithm) -> None:
        """Exact: the result is the sketch of both streams together (see the module docstring)."""
        self.check_mergeable(other)
        assert isinstance(other, SpreadSketch)
        _merge(self.cells, other.cells, self.key_words)

    def state_arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {"cells": self.cells}

    def load_state_arrays(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.cells[...] = arrays["cells"]

    @property
    def memory_bytes(self) -> int:
        return int(self.cells.nbytes)

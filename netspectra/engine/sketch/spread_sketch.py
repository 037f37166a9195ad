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

The kernels live in :mod:`.spread_sketch_kernels` (imported when a sketch counts, so that
``config check`` and ``plugins list`` do not import numba).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

# numba-free: the kernels (spread_sketch_kernels, murmur3) are imported where a sketch uses them
from netspectra.engine.sketch.params import SpreadSketchParams
from netspectra.engine.sketch.protocol import (
    KeyMatrix,
    SketchAlgorithm,
    SketchBase,
    SketchParams,
    unique_rows,
)
from netspectra.model.fields import KeyField
from netspectra.model.snapshot import HeavyHitter, HitterKind

_EMPTY = np.uint64(0xFFFFFFFFFFFFFFFF)
"""Priority of a bucket no pair has reached (spread_sketch_kernels.EMPTY, without numba)."""


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
        from netspectra.engine.sketch.murmur3 import row_seeds

        self.seeds = row_seeds(params.seed, params.depth)
        self.pair_seeds = row_seeds(params.seed ^ 0x5BD1E995, 2)
        self._level_words = params.bits // 64
        stride = 1 + self.key_words + params.levels * self._level_words
        self.cells = np.zeros((params.depth * params.width, stride), np.uint64)
        self.cells[:, 0] = _EMPTY
        self._offsets = (np.arange(params.depth, dtype=np.uint32) * np.uint32(params.width)).reshape(-1, 1)

    def insert(self, flow_keys: KeyMatrix, element_keys: KeyMatrix, sizes: npt.NDArray[np.uint64]) -> None:
        """Hash the flows (every row) and the pairs, then one pass over the batch; sizes are ignored."""
        from netspectra.engine.sketch import spread_sketch_kernels as kernels
        from netspectra.engine.sketch.murmur3 import as_words, hash_buckets

        n = flow_keys.shape[0]
        if n == 0:
            return
        flow_words = as_words(flow_keys)
        pairs = np.hstack((flow_keys, element_keys))
        buckets = np.empty((self.p.depth, n), np.uint32)
        hash_buckets(flow_words, flow_keys.shape[1], self.seeds, self.p.width, buckets)
        buckets += self._offsets
        kernels.update(
            flow_words, as_words(pairs), pairs.shape[1], self.pair_seeds, buckets, self.cells,
            self.key_words, self.p.levels, self._level_words,
        )  # fmt: skip

    def query(self, flow_keys: KeyMatrix) -> dict[HitterKind, npt.NDArray[np.uint64]]:
        """Smallest MRB estimate over the flow's rows (an empty bucket estimates 0)."""
        from netspectra.engine.sketch import spread_sketch_kernels as kernels
        from netspectra.engine.sketch.murmur3 import as_words

        out = np.zeros(flow_keys.shape[0], np.uint64)
        if flow_keys.shape[0]:
            kernels.query(
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
        unique = unique_rows(keys)[0]  # np.unique(axis=0)'s order, ~50x faster
        spreads = self.query(unique)[HitterKind.SPREAD]
        picked = spreads >= self.p.count_thereshold
        return tuple(self.hitters_from(unique[picked], spreads[picked], HitterKind.SPREAD))

    def reset(self) -> None:
        self.cells.fill(0)
        self.cells[:, 0] = _EMPTY

    def merge(self, other: SketchAlgorithm) -> None:
        """Exact: the result is the sketch of both streams together (see the module docstring)."""
        from netspectra.engine.sketch import spread_sketch_kernels as kernels

        self.check_mergeable(other)
        assert isinstance(other, SpreadSketch)
        kernels.merge(self.cells, other.cells, self.key_words)

    def state_arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {"cells": self.cells}

    def load_state_arrays(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.cells[...] = arrays["cells"]

    @property
    def memory_bytes(self) -> int:
        return int(self.cells.nbytes)

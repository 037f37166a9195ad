"""``count_min``: the Go reference's heavy-hitter Count-Min, plus a decaying variant that beats it.

Layout (both variants, so they compare at equal memory): ``depth`` rows x ``width`` buckets;
each bucket holds a packet-count cell (flow key + counter) and, separately, a byte cell (flow
key + counter). A flow hashes to one bucket per row (32-bit MurmurHash3, fixed per-row seeds).

``variant="go"`` is Go2NetSpectra's ``statistic.CountMin.Insert`` exactly (majority vote):
  * count cell: empty → claim with 1; same key → +1; other key → -1, and at 0 the key is
    replaced (the counter stays 0, so the next packet of any flow claims it);
  * byte cell: empty → claim with the size; same key → +size; other key → if the new size
    exceeds the counter, replace key and counter with it, else subtract the size.

``variant="decay"`` (default) makes the vote against a resident *probabilistic*, as
HeavyKeeper does: another flow decrements a resident holding ``C`` packets only with
probability ``b**-C`` (replace at 0 with the newcomer at 1). Bytes decay the same way with
``C`` read as "how many packets of this size the resident holds" (``counter // size``). A large
resident is then almost never eroded by mice, which is where the Go variant loses both recall
(heavy flows evicted) and accuracy (counts under-estimated). Measured in ``bench/sketches.py``.

Counters are 64-bit (Go's are 32-bit and wrap after 4 GiB per bucket within a period).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

# numba-free: the kernels (count_min_kernels, murmur3) are imported where a sketch uses them
from netspectra.engine.sketch.params import CountMinParams
from netspectra.engine.sketch.protocol import KeyMatrix, SketchAlgorithm, SketchBase, SketchParams
from netspectra.engine.sketch.rows import PARALLEL_MIN_BATCH, run_rows
from netspectra.model.fields import KeyField
from netspectra.model.snapshot import HeavyHitter, HitterKind

_VARIANT_CODE = {"go": 0, "decay": 1}


def decay_thresholds(base: float) -> npt.NDArray[np.uint64]:
    """``floor(base**-c * 2**32)`` for c = 0, 1, ... until it reaches 0 (compared to a 32-bit draw)."""
    length = math.ceil(32 * math.log(2) / math.log(base)) + 2
    values = [min(int(base**-c * 2**32), 2**32) for c in range(length)]
    values[-1] = 0
    return np.array(values, np.uint64)


class CountMin(SketchBase):
    """Heavy hitters by packets (``count``) and by bytes (``size``); see the module docstring."""

    Params = CountMinParams
    summary = "Count-Min heavy hitters by packets and bytes (Go2NetSpectra skt_type 0)"
    mergeable = True

    def __init__(
        self,
        params: SketchParams,
        *,
        flow_fields: Sequence[KeyField],
        element_fields: Sequence[KeyField] = (),
    ) -> None:
        super().__init__(params, flow_fields=flow_fields, element_fields=element_fields)
        assert isinstance(params, CountMinParams)
        self.p: CountMinParams = params
        from netspectra.engine.sketch.murmur3 import row_seeds

        shape = (params.depth, params.width)
        self.seeds = row_seeds(params.seed, params.depth)
        words = self.key_words
        # one contiguous bucket: [byte key | bytes | count key | packets]; the named views below
        # are what query, merge and heavy-hitter extraction read
        self.cells = np.zeros((*shape, 2 * words + 2), np.uint64)
        self.size_keys = self.cells[:, :, :words]
        self.byte_counts = self.cells[:, :, words]
        self.count_keys = self.cells[:, :, words + 1 : 2 * words + 1]
        self.counts = self.cells[:, :, 2 * words + 1]
        self._variant = _VARIANT_CODE[params.variant]
        self._thresholds = decay_thresholds(params.b)
        # one splitmix64 stream per row: rows never share randomness, so running them in
        # parallel gives exactly the serial result
        self._random_states = row_seeds(params.seed ^ 0x5DEECE66D, params.depth).astype(np.uint64)

    def insert(self, flow_keys: KeyMatrix, element_keys: KeyMatrix, sizes: npt.NDArray[np.uint64]) -> None:
        """Hash the batch once (all rows), then update row by row; ``element_keys`` is ignored."""
        from netspectra.engine.sketch import count_min_kernels as kernels
        from netspectra.engine.sketch.murmur3 import as_words, hash_buckets

        if flow_keys.shape[0] == 0:
            return
        words = as_words(flow_keys)
        buckets = np.empty((self.p.depth, words.shape[0]), np.uint32)
        hash_buckets(words, self.key_width, self.seeds, self.p.width, buckets)
        sizes = np.ascontiguousarray(sizes, dtype=np.uint64)
        states = self._random_states
        if self.p.parallel_rows and self.p.depth > 1 and words.shape[0] >= PARALLEL_MIN_BATCH:

            def update_row(r: int) -> None:
                states[r] = kernels.update_row(
                    words, sizes, buckets[r], self.cells[r], self._variant, self._thresholds, states[r]
                )

            run_rows(self.p.depth, update_row)
        else:
            kernels.update_rows(words, sizes, buckets, self.cells, self._variant, self._thresholds, states)

    def query(self, flow_keys: KeyMatrix) -> dict[HitterKind, npt.NDArray[np.uint64]]:
        """Max over rows of the cells that hold this flow (0 when none does), as in Go's Query."""
        from netspectra.engine.sketch.murmur3 import as_words, best_matching_value

        n = flow_keys.shape[0]
        out_count = np.zeros(n, np.uint64)
        out_bytes = np.zeros(n, np.uint64)
        if n:
            words, width, seeds = as_words(flow_keys), self.key_width, self.seeds
            best_matching_value(words, width, seeds, self.count_keys, self.counts, out_count)
            best_matching_value(words, width, seeds, self.size_keys, self.byte_counts, out_bytes)
        return {HitterKind.COUNT: out_count, HitterKind.SIZE: out_bytes}

    def heavy_hitters(self) -> tuple[HeavyHitter, ...]:
        """Flows whose largest cell reaches ``count_thereshold`` / ``size_thereshold`` (Go's scan)."""
        return tuple(
            self.cell_hitters(self.count_keys, self.counts, self.p.count_thereshold, HitterKind.COUNT)
            + self.cell_hitters(self.size_keys, self.byte_counts, self.p.size_thereshold, HitterKind.SIZE)
        )

    def reset(self) -> None:
        self.cells.fill(0)

    def merge(self, other: SketchAlgorithm) -> None:
        """Cell-wise vote merge (exact for disjoint buckets; a resident beats a smaller one)."""
        from netspectra.engine.sketch import count_min_kernels as kernels

        self.check_mergeable(other)
        assert isinstance(other, CountMin)
        kernels.merge_cells(self.count_keys, self.counts, other.count_keys, other.counts, False)
        kernels.merge_cells(self.size_keys, self.byte_counts, other.size_keys, other.byte_counts, True)

    @property
    def memory_bytes(self) -> int:
        return int(self.cells.nbytes)

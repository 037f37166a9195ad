"""``super_spread``: the Go reference's SuperSpread — who talks to the most distinct peers.

Layout: ``depth`` rows x ``width`` buckets; each bucket holds a flow key, a spread counter and
a small HyperLogLog-style sampler of ``m`` registers of ``size`` bits (Go's ``GeneralHLL``).
Per packet and row (Go's ``Insert``):

1. the flow hashes to bucket ``j``; the pair (flow key ‖ element key) is hashed twice: a
   geometric value ``min(clz32(h0) + 1, 2**size - 1)`` and a register index ``h1 % m``;
2. if the value does not raise that register, the pair was (probably) seen: nothing happens;
3. otherwise ``p`` — the probability that a new pair would have changed the sampler, kept as
   ``sum(base**register) / m`` — is read *before* the update and then adjusted; the pair
   stands for ``1/p`` distinct elements, applied as ``ceil(1/p)`` votes with probability
   ``(1/p) / ceil(1/p)`` (unbiased);
4. each vote: empty counter → claim it; same flow → +1; another flow → -1 with probability
   ``b**-counter`` (a big resident is hard to evict).

A flow's spread is the largest counter holding its key; flows reaching ``count_thereshold``
(Go reuses that name) are reported as ``spread`` hitters. Unlike Go (whose ``Reset`` panics on
a nil lock array), :meth:`SuperSpread.reset` clears everything. Registers are bytes (Go: 32-bit
words). Hash seeds are fixed per task (``seed``) and randomness is a seeded splitmix64, so runs
are reproducible. Not mergeable: the per-bucket ``p`` cannot be combined.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

# numba-free: the kernels (super_spread_kernels, murmur3) are imported where a sketch uses them
from netspectra.engine.sketch.count_min import decay_thresholds
from netspectra.engine.sketch.params import SuperSpreadParams
from netspectra.engine.sketch.protocol import KeyMatrix, SketchAlgorithm, SketchBase, SketchParams
from netspectra.engine.sketch.rows import PARALLEL_MIN_BATCH, run_rows
from netspectra.errors import PluginError
from netspectra.model.fields import KeyField
from netspectra.model.snapshot import HeavyHitter, HitterKind


class SuperSpread(SketchBase):
    """Super-spreaders: flows with the most distinct elements (Go2NetSpectra skt_type 1)."""

    Params = SuperSpreadParams
    summary = "SuperSpread: flows with the most distinct elements (Go2NetSpectra skt_type 1)"
    mergeable = False

    def __init__(
        self,
        params: SketchParams,
        *,
        flow_fields: Sequence[KeyField],
        element_fields: Sequence[KeyField] = (),
    ) -> None:
        super().__init__(params, flow_fields=flow_fields, element_fields=element_fields)
        assert isinstance(params, SuperSpreadParams)
        self.p: SuperSpreadParams = params
        from netspectra.engine.sketch.murmur3 import row_seeds

        shape = (params.depth, params.width)
        seeds = row_seeds(params.seed, 3 * params.depth)
        self.seeds = seeds[: params.depth].copy()
        # per row: (geometric hash seed, register index seed), interleaved for the fused hash
        self.pair_seeds = seeds[params.depth :].copy()
        self.keys = np.zeros((*shape, self.key_words), np.uint64)
        self.values = np.zeros(shape, np.uint64)
        self.registers = np.zeros((*shape, params.m), np.uint8)
        self.probabilities = np.ones(shape, np.float64)
        self._powers = np.array([params.base**k for k in range(2**params.size + 1)], np.float64)
        self._max_value = np.uint32(2**params.size - 1)
        self._thresholds = decay_thresholds(params.b)
        # one random stream per row, so rows may run in parallel and still give the serial result
        self._random_states = row_seeds(params.seed ^ 0x2545F4914F6CDD1D, params.depth).astype(np.uint64)

    def insert(self, flow_keys: KeyMatrix, element_keys: KeyMatrix, sizes: npt.NDArray[np.uint64]) -> None:
        """Hash the batch (flow buckets, pair samples) for all rows, then update row by row.

        The pair key (flow ‖ element) is what the sampler counts as distinct.
        """
        from netspectra.engine.sketch import super_spread_kernels as kernels
        from netspectra.engine.sketch.murmur3 import as_words, hash_buckets

        n = flow_keys.shape[0]
        if n == 0:
            return
        flow_words = as_words(flow_keys)
        pairs = np.hstack((flow_keys, element_keys))
        buckets = np.empty((self.p.depth, n), np.uint32)
        hash_buckets(flow_words, flow_keys.shape[1], self.seeds, self.p.width, buckets)
        samples = np.empty((self.p.depth, n), np.uint32)
        pair_words = as_words(pairs)
        kernels.pair_samples(pair_words, pairs.shape[1], self.pair_seeds, self.p.m, self._max_value, samples)
        states = self._random_states
        if self.p.parallel_rows and self.p.depth > 1 and n >= PARALLEL_MIN_BATCH:

            def update_row(r: int) -> None:
                states[r] = kernels.update_row(
                    flow_words, buckets[r], samples[r], self.keys[r], self.values[r], self.registers[r],
                    self.probabilities[r], self._powers, self._max_value, self._thresholds, states[r],
                )  # fmt: skip

            run_rows(self.p.depth, update_row)
        else:
            kernels.update_rows(
                flow_words, buckets, samples, self.keys, self.values, self.registers, self.probabilities,
                self._powers, self._max_value, self._thresholds, states,
            )  # fmt: skip

    def query(self, flow_keys: KeyMatrix) -> dict[HitterKind, npt.NDArray[np.uint64]]:
        """Largest counter holding the flow (0 when none; Go reports at least 1)."""
        from netspectra.engine.sketch.murmur3 import as_words, best_matching_value

        out = np.zeros(flow_keys.shape[0], np.uint64)
        if flow_keys.shape[0]:
            words = as_words(flow_keys)
            best_matching_value(words, flow_keys.shape[1], self.seeds, self.keys, self.values, out)
        return {HitterKind.SPREAD: out}

    def heavy_hitters(self) -> tuple[HeavyHitter, ...]:
        """Flows whose spread reaches ``count_thereshold``, descending."""
        return tuple(self.cell_hitters(self.keys, self.values, self.p.count_thereshold, HitterKind.SPREAD))

    def reset(self) -> None:
        """Clear counters, keys and samplers (Go's Reset panics here; this one is tested)."""
        self.keys.fill(0)
        self.values.fill(0)
        self.registers.fill(0)
        self.probabilities.fill(1.0)

    def merge(self, other: SketchAlgorithm) -> None:
        raise PluginError(
            "super_spread sketches cannot be merged: each bucket's sampling probability depends on "
            "the order its own packets arrived in"
        )

    @property
    def memory_bytes(self) -> int:
        return int(self.keys.nbytes + self.values.nbytes + self.registers.nbytes + self.probabilities.nbytes)

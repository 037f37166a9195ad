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

import numba as nb
import numpy as np
import numpy.typing as npt
from pydantic import AliasChoices, Field

from netspectra.engine.sketch.count_min import decay_thresholds
from netspectra.engine.sketch.murmur3 import as_words, hash_words_into, row_seeds
from netspectra.engine.sketch.protocol import KeyMatrix, SketchAlgorithm, SketchBase, SketchParams
from netspectra.engine.snapshot import HeavyHitter, HitterKind
from netspectra.errors import PluginError
from netspectra.fields import KeyField


class SuperSpreadParams(SketchParams):
    """Parameters of a ``super_spread`` task (Go's names and defaults)."""

    width: int = Field(1 << 20, ge=1, le=1 << 26, description="buckets per row")
    depth: int = Field(3, ge=1, le=16, description="rows")
    count_thereshold: int = Field(
        4096,
        ge=1,
        validation_alias=AliasChoices("count_thereshold", "count_threshold", "threshold"),
        description="report flows with at least this many distinct elements",
    )
    m: int = Field(128, ge=1, le=1 << 16, description="sampler registers per bucket")
    size: int = Field(5, ge=1, le=8, description="bits per register (values up to 2**size - 1)")
    base: float = Field(0.5, gt=0.0, lt=1.0, description="P(register value >= k+1) = base**k")
    b: float = Field(1.08, gt=1.0, le=2.0, description="resident-eviction base: P(decrement) = b**-counter")
    seed: int = Field(0, ge=0, description="derives the hash seeds")


@nb.njit(inline="always", nogil=True)
def _next_random(state):  # type: ignore[no-untyped-def]
    state = np.uint64(state + np.uint64(0x9E3779B97F4A7C15))
    z = state
    z = np.uint64((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9))
    z = np.uint64((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB))
    z = z ^ (z >> np.uint64(31))
    return state, z


@nb.njit(cache=True, nogil=True)
def _insert(  # type: ignore[no-untyped-def]
    flow_words, flow_bytes, pair_words, pair_bytes, seeds, pair_seeds, keys, values, registers,
    probabilities, powers, max_value, thresholds, state,
):  # fmt: skip
    n = flow_words.shape[0]
    nwords = flow_words.shape[1]
    depth = seeds.shape[0]
    width = np.uint32(values.shape[1])
    power_of_two = (width & (width - np.uint32(1))) == 0
    mask = width - np.uint32(1)
    m = np.uint32(registers.shape[2])
    inv_m = 1.0 / registers.shape[2]
    last = np.uint64(thresholds.shape[0] - 1)
    buckets = np.empty(depth, np.uint32)
    pair_hashes = np.empty(2 * depth, np.uint32)
    for i in range(n):
        # pair hashes first: most packets repeat a known pair and stop at the register test
        hash_words_into(pair_words, i, pair_bytes, pair_seeds, pair_hashes)
        flow_hashed = False
        for r in range(depth):
            geometric_hash = pair_hashes[2 * r]
            value = np.uint32(1)
            probe = np.uint32(0x80000000)
            while probe != 0 and (geometric_hash & probe) == 0:
                value += np.uint32(1)
                probe >>= np.uint32(1)
            if value > max_value:
                value = max_value
            if not flow_hashed:
                hash_words_into(flow_words, i, flow_bytes, seeds, buckets)
                flow_hashed = True
            bucket = buckets[r] & mask if power_of_two else buckets[r] % width
            index = pair_hashes[2 * r + 1] % m
            old = np.uint32(registers[r, bucket, index])
            if value <= old:
                continue
            registers[r, bucket, index] = value
            p = probabilities[r, bucket]
            updated = p - powers[old] * inv_m
            if value < max_value:
                updated += powers[value] * inv_m
            probabilities[r, bucket] = updated
            if p <= 0.0:
                continue
            inverse = 1.0 / p
            votes = np.ceil(inverse)
            state, draw = _next_random(state)
            if (draw >> np.uint64(11)) * (1.0 / 9007199254740992.0) >= inverse / votes:
                continue
            remaining = np.int64(votes)
            while remaining > 0:
                held = values[r, bucket]
                if held == 0:
                    for j in range(nwords):
                        keys[r, bucket, j] = flow_words[i, j]
                    values[r, bucket] = remaining
                    break
                same = True
                for j in range(nwords):
                    if keys[r, bucket, j] != flow_words[i, j]:
                        same = False
                        break
                if same:
                    values[r, bucket] = held + remaining
                    break
                position = np.uint64(held) if np.uint64(held) < last else last
                state, draw = _next_random(state)
                if (draw >> np.uint64(32)) < thresholds[position]:
                    values[r, bucket] = held - 1
                remaining -= 1
    return state


@nb.njit(cache=True, nogil=True)
def _query(flow_words, flow_bytes, seeds, keys, values, out):  # type: ignore[no-untyped-def]
    width = np.uint32(values.shape[1])
    nwords = flow_words.shape[1]
    buckets = np.empty(seeds.shape[0], np.uint32)
    for i in range(flow_words.shape[0]):
        hash_words_into(flow_words, i, flow_bytes, seeds, buckets)
        best = np.uint64(0)
        for r in range(seeds.shape[0]):
            bucket = buckets[r] % width
            same = True
            for j in range(nwords):
                if keys[r, bucket, j] != flow_words[i, j]:
                    same = False
                    break
            if same and values[r, bucket] > best:
                best = values[r, bucket]
        out[i] = best


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
        from netspectra.engine.keys import key_width

        self.key_width = key_width(self.flow_fields)
        shape = (params.depth, params.width)
        seeds = row_seeds(params.seed, 3 * params.depth)
        self.seeds = seeds[: params.depth].copy()
        # per row: (geometric hash seed, register index seed), interleaved for the fused hash
        self.pair_seeds = seeds[params.depth :].copy()
        self.key_words = max(1, -(-self.key_width // 8))
        self.keys = np.zeros((*shape, self.key_words), np.uint64)
        self.values = np.zeros(shape, np.uint64)
        self.registers = np.zeros((*shape, params.m), np.uint8)
        self.probabilities = np.ones(shape, np.float64)
        self._powers = np.array([params.base**k for k in range(2**params.size + 1)], np.float64)
        self._max_value = np.uint32(2**params.size - 1)
        self._thresholds = decay_thresholds(params.b)
        self._random_state = np.uint64(params.seed ^ 0x2545F4914F6CDD1D)

    def insert(self, flow_keys: KeyMatrix, element_keys: KeyMatrix, sizes: npt.NDArray[np.uint64]) -> None:
        """One kernel call; the pair key (flow ‖ element) is what the sampler counts as distinct."""
        if flow_keys.shape[0] == 0:
            return
        pairs = np.hstack((flow_keys, element_keys))
        state = _insert(
            as_words(flow_keys),
            flow_keys.shape[1],
            as_words(pairs),
            pairs.shape[1],
            self.seeds,
            self.pair_seeds,
            self.keys,
            self.values,
            self.registers,
            self.probabilities,
            self._powers,
            self._max_value,
            self._thresholds,
            self._random_state,
        )
        self._random_state = np.uint64(state)

    def query(self, flow_keys: KeyMatrix) -> dict[HitterKind, npt.NDArray[np.uint64]]:
        """Largest counter holding the flow (0 when none; Go reports at least 1)."""
        out = np.zeros(flow_keys.shape[0], np.uint64)
        if flow_keys.shape[0]:
            _query(as_words(flow_keys), flow_keys.shape[1], self.seeds, self.keys, self.values, out)
        return {HitterKind.SPREAD: out}

    def heavy_hitters(self) -> tuple[HeavyHitter, ...]:
        """Flows whose spread reaches ``count_thereshold``, descending."""
        flat = self.values.reshape(-1)
        picked = np.flatnonzero(flat >= self.p.count_thereshold)
        if picked.size == 0:
            return ()
        cell_keys = self.keys.reshape(-1, self.key_words)[picked].view(np.uint8)[:, : self.key_width]
        unique, inverse = np.unique(cell_keys, axis=0, return_inverse=True)
        best = np.zeros(unique.shape[0], np.uint64)
        np.maximum.at(best, inverse.reshape(-1), flat[picked])
        return tuple(self.hitters_from(unique, best, HitterKind.SPREAD))

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

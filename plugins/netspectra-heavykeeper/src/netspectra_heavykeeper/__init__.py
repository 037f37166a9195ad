"""HeavyKeeper (Gong et al., USENIX ATC 2018): the top-k largest flows by packets, in fixed memory.

``depth`` rows x ``width`` buckets each hold a 32-bit flow fingerprint and a counter. A packet
of a flow adds 1 where its fingerprint sits; elsewhere it *decays* the resident: -1 with
probability ``b**-counter``, taking the bucket over when the counter reaches 0. Elephants are
almost never decayed, mice cannot hold a bucket for long. A ``k``-slot table keeps the full
keys of the current top-k; the flow's estimate (max over its rows) decides who enters it.

This package is the worked example of ``docs/plugins.md`` in NetSpectra: one numba kernel over
the whole batch (in :mod:`._kernels`, imported when a sketch counts, so that NetSpectra can load
this class and validate ``Params`` without importing numba), a pydantic ``Params`` model, and
the sketch protocol's six methods.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from pydantic import Field

from netspectra.sketch_api import (
    HeavyHitter,
    HitterKind,
    KeyField,
    KeyMatrix,
    PluginError,
    SketchAlgorithm,
    SketchBase,
    SketchParams,
    key_width,
)

__version__ = "0.1.0"


class HeavyKeeperParams(SketchParams):
    """What a task may set (unknown keys are rejected, so typos fail at start-up)."""

    k: int = Field(100, ge=1, le=100_000, description="flows to keep and report")
    width: int = Field(4096, ge=1, description="buckets per row")
    depth: int = Field(2, ge=1, le=8, description="rows")
    b: float = Field(1.08, gt=1.0, le=2.0, description="decay base: P(decay) = b**-counter")
    seed: int = Field(0, ge=0, description="hash seeds (equal seeds: equal results)")


class HeavyKeeper(SketchBase):
    """Top-k flows by packets (reported as ``count`` hitters)."""

    Params = HeavyKeeperParams
    summary = "HeavyKeeper top-k elephant flows by packets (third-party example plugin)"
    mergeable = False

    def __init__(
        self,
        params: SketchParams,
        *,
        flow_fields: Sequence[KeyField],
        element_fields: Sequence[KeyField] = (),
    ) -> None:
        # row_seeds lives with numba kernels: taken here, not at import, like the kernel itself
        from netspectra.sketch_api import row_seeds

        super().__init__(params, flow_fields=flow_fields, element_fields=element_fields)
        assert isinstance(params, HeavyKeeperParams)
        self.p = params
        seeds = row_seeds(params.seed, params.depth + 1)
        self.seeds, self.fingerprint_seed = seeds[1:].copy(), np.uint32(seeds[0])
        self.fingerprints = np.zeros((params.depth, params.width), np.uint32)
        self.counters = np.zeros((params.depth, params.width), np.uint64)
        # floor(b**-c * 2**32): decay when a 32-bit random draw falls below it
        self.decay = np.array([min(int(params.b**-c * 2**32), 2**32) for c in range(400)], np.uint64)
        width = key_width(self.flow_fields)
        self.top_keys = np.zeros((params.k, width), np.uint8)
        self.top_fps = np.zeros(params.k, np.uint32)
        self.top_counts = np.zeros(params.k, np.uint64)
        self.used = 0
        self.state = np.uint64(params.seed + 1)

    def insert(self, flow_keys: KeyMatrix, element_keys: KeyMatrix, sizes: npt.NDArray[np.uint64]) -> None:
        from ._kernels import insert_batch

        if flow_keys.shape[0] == 0:
            return
        used, state = insert_batch(
            np.ascontiguousarray(flow_keys),
            self.seeds,
            self.fingerprint_seed,
            self.fingerprints,
            self.counters,
            self.decay,
            self.top_keys,
            self.top_fps,
            self.top_counts,
            self.used,
            self.state,
        )
        self.used, self.state = int(used), np.uint64(state)

    def query(self, flow_keys: KeyMatrix) -> dict[HitterKind, npt.NDArray[np.uint64]]:
        """The top-k table's count for flows in it, 0 for the others."""
        table = {self.top_keys[s].tobytes(): int(self.top_counts[s]) for s in range(self.used)}
        values = [table.get(row.tobytes(), 0) for row in flow_keys]
        return {HitterKind.COUNT: np.array(values, np.uint64)}

    def heavy_hitters(self) -> tuple[HeavyHitter, ...]:
        return tuple(
            self.hitters_from(self.top_keys[: self.used], self.top_counts[: self.used], HitterKind.COUNT)
        )

    def reset(self) -> None:
        for array in (self.fingerprints, self.counters, self.top_keys, self.top_fps, self.top_counts):
            array.fill(0)
        self.used = 0

    def merge(self, other: SketchAlgorithm) -> None:
        raise PluginError("heavykeeper sketches cannot be merged: decay depends on arrival order")

    @property
    def memory_bytes(self) -> int:
        arrays = (self.fingerprints, self.counters, self.top_keys, self.top_fps, self.top_counts)
        return sum(int(a.nbytes) for a in arrays)

"""Count-Min's weighted entry point (flow records): a record of N packets counts N packets."""

from __future__ import annotations

import numpy as np
import pytest

from netspectra.engine.sketch.count_min import CountMin, CountMinParams
from netspectra.model.fields import KeyField
from netspectra.model.snapshot import HitterKind

SRC = (KeyField.SRC_IP,)


@pytest.mark.parametrize("variant", ["go", "decay"])
def test_records_without_collisions_count_their_weights_exactly(variant: str) -> None:
    """Few flows in a wide sketch: no two share a bucket, so every estimate is the flow's total."""
    rng = np.random.default_rng(3)
    universe = rng.integers(0, 256, size=(20, 16), dtype=np.uint8)
    ids = rng.integers(0, 20, size=500)
    weights = rng.integers(1, 1000, size=500).astype(np.uint64)
    sizes = weights * rng.integers(40, 1500, size=500).astype(np.uint64)
    sketch = CountMin(CountMinParams(width=1 << 16, depth=3, variant=variant), flow_fields=SRC)
    sketch.insert_weighted(universe[ids], universe[ids], sizes, weights)
    estimates = sketch.query(universe)
    for flow in range(20):
        mine = ids == flow
        assert int(estimates[HitterKind.COUNT][flow]) == int(weights[mine].sum())
        assert int(estimates[HitterKind.SIZE][flow]) == int(sizes[mine].sum())


def test_a_record_of_n_packets_equals_n_packets_of_its_flow() -> None:
    """Go variant, colliding flows: weight w in one record leaves the cells as w unit packets do
    when the record's packets are consecutive (the majority vote is order-dependent otherwise)."""
    rng = np.random.default_rng(4)
    universe = rng.integers(0, 256, size=(50, 16), dtype=np.uint8)
    ids = rng.integers(0, 50, size=300)
    weights = rng.integers(1, 20, size=300).astype(np.uint64)
    params = CountMinParams(width=16, depth=2, variant="go")
    records = CountMin(params, flow_fields=SRC)
    packets = CountMin(params, flow_fields=SRC)
    records.insert_weighted(universe[ids], universe[ids], np.zeros(300, np.uint64), weights)
    expanded = np.repeat(ids, weights.astype(np.int64))
    packets.insert(universe[expanded], universe[expanded], np.zeros(expanded.shape[0], np.uint64))
    assert np.array_equal(records.counts, packets.counts)
    assert np.array_equal(records.linear_counts, packets.linear_counts)
    held = records.counts > 0
    assert np.array_equal(records.count_keys[held], packets.count_keys[held])

"""super_spread: planted spreaders found with small error (truth: distinct pairs counted by set)."""

from __future__ import annotations

import numpy as np
import pytest

from netspectra.engine.sketch.murmur3 import as_words, row_seeds
from netspectra.engine.sketch.rows import PARALLEL_MIN_BATCH
from netspectra.engine.sketch.super_spread import SuperSpread, SuperSpreadParams
from netspectra.engine.sketch.super_spread_kernels import pair_samples
from netspectra.errors import PluginError
from netspectra.model.fields import KeyField, address_bytes
from netspectra.model.snapshot import HitterKind
from tests.unit.sketch.test_sketch_murmur3 import reference_murmur3

DST, SRC = (KeyField.DST_IP,), (KeyField.SRC_IP,)
SPREADS = (300, 500, 800, 1200, 2000, 3000, 5000)
THRESHOLD = 200


@pytest.fixture(scope="module")
def trace():  # type: ignore[no-untyped-def]
    """Zipf background (each flow talks to a handful of peers) plus planted spreaders, shuffled."""
    rng = np.random.default_rng(21)
    flows = 20_000
    weights = np.arange(1, flows + 1, dtype=np.float64) ** -1.1
    background = rng.choice(flows, size=300_000, p=weights / weights.sum())
    background_peer = rng.integers(0, 20, size=background.shape[0])
    planted = np.concatenate([np.full(s, flows + i) for i, s in enumerate(SPREADS)])
    planted_peer = np.concatenate([rng.permutation(100_000)[:s] + 1000 for s in SPREADS])
    flow_ids = np.concatenate([background, planted, planted])  # every planted pair seen twice
    peer_ids = np.concatenate([background_peer, planted_peer, planted_peer])
    order = rng.permutation(flow_ids.shape[0])
    flow_ids, peer_ids = flow_ids[order], peer_ids[order]
    flow_universe = rng.integers(0, 256, size=(flows + len(SPREADS), 16), dtype=np.uint8)
    peer_universe = rng.integers(0, 256, size=(101_000, 16), dtype=np.uint8)
    truth: dict[bytes, set[bytes]] = {}
    for flow, peer in zip(flow_ids.tolist(), peer_ids.tolist(), strict=True):
        truth.setdefault(flow_universe[flow].tobytes(), set()).add(peer_universe[peer].tobytes())
    spread = {key: len(peers) for key, peers in truth.items()}
    return flow_universe[flow_ids], peer_universe[peer_ids], spread, flow_universe[flows:]


def feed(sketch: SuperSpread, flows, peers, batch: int = 8192) -> None:  # type: ignore[no-untyped-def]
    for start in range(0, flows.shape[0], batch):
        chunk = slice(start, start + batch)
        sketch.insert(flows[chunk], peers[chunk], np.zeros(flows[chunk].shape[0], np.uint64))


def make() -> SuperSpread:
    return SuperSpread(
        SuperSpreadParams(width=4096, depth=2, count_thereshold=THRESHOLD, m=128, size=5, base=0.5, b=1.08),
        flow_fields=DST,
        element_fields=SRC,
    )


def check_spreaders(sketch: SuperSpread, spread, planted) -> None:  # type: ignore[no-untyped-def]
    reported = {address_bytes(h.flow): h.value for h in sketch.heavy_hitters()}
    assert all(h.kind == HitterKind.SPREAD for h in sketch.heavy_hitters())
    errors = []
    for key in planted:
        raw = key.tobytes()
        assert raw in reported, f"planted spreader with spread {spread[raw]} not reported"
        errors.append(abs(reported[raw] - spread[raw]) / spread[raw])
    assert float(np.mean(errors)) <= 0.15
    false_positives = [key for key in reported if spread.get(key, 0) < THRESHOLD / 2]
    assert not false_positives


def test_finds_every_planted_spreader(trace) -> None:  # type: ignore[no-untyped-def]
    flows, peers, spread, planted = trace
    sketch = make()
    feed(sketch, flows, peers)
    check_spreaders(sketch, spread, planted)
    values = [h.value for h in sketch.heavy_hitters()]
    assert values == sorted(values, reverse=True)


def test_reset_clears_and_counting_resumes(trace) -> None:  # type: ignore[no-untyped-def]
    """Go's Reset panics on its never-allocated lock array; ours must work, repeatedly."""
    flows, peers, spread, planted = trace
    sketch = make()
    feed(sketch, flows, peers)
    sketch.reset()
    assert sketch.heavy_hitters() == ()
    assert not sketch.query(planted)[HitterKind.SPREAD].any()
    assert not sketch.registers.any() and (sketch.probabilities == 1.0).all()
    feed(sketch, flows, peers)
    check_spreaders(sketch, spread, planted)
    sketch.reset()
    assert sketch.heavy_hitters() == ()


def test_duplicate_pairs_do_not_inflate_spread() -> None:
    sketch = make()
    flow = np.full((1000, 16), 7, np.uint8)
    peers = np.repeat(np.arange(10, dtype=np.uint8), 100).reshape(1000, 1).repeat(16, axis=1)
    sketch.insert(flow, peers, np.zeros(1000, np.uint64))
    assert 5 <= int(sketch.query(flow[:1])[HitterKind.SPREAD][0]) <= 15


def test_not_mergeable() -> None:
    with pytest.raises(PluginError, match="cannot be merged"):
        make().merge(make())


def test_parallel_rows_give_the_serial_result(trace) -> None:  # type: ignore[no-untyped-def]
    flows, peers, _, _ = trace
    params = {"width": 1024, "depth": 3, "count_thereshold": THRESHOLD, "m": 128, "size": 5}
    serial = SuperSpread(SuperSpreadParams(**params), flow_fields=DST, element_fields=SRC)
    parallel_params = SuperSpreadParams(**params, parallel_rows=True)
    parallel = SuperSpread(parallel_params, flow_fields=DST, element_fields=SRC)
    feed(serial, flows[:100_000], peers[:100_000], batch=PARALLEL_MIN_BATCH * 2)
    feed(parallel, flows[:100_000], peers[:100_000], batch=PARALLEL_MIN_BATCH * 2)
    for name in ("keys", "values", "registers", "probabilities"):
        assert np.array_equal(getattr(serial, name), getattr(parallel, name)), name
    assert serial.values.any()


@pytest.mark.parametrize(("depth", "m", "size"), [(2, 128, 5), (3, 100, 8), (1, 1, 1)])
def test_pair_samples_are_go_register_index_and_geometric_value(depth: int, m: int, size: int) -> None:
    """Row r: register ``h(pair, seed 2r+1) % m``, value ``min(clz32(h(pair, seed 2r)) + 1, 2**size - 1)``."""
    rng = np.random.default_rng(depth * 100 + m)
    pairs = rng.integers(0, 256, size=(300, 32), dtype=np.uint8)
    seeds = row_seeds(9, 2 * depth)
    out = np.empty((depth, pairs.shape[0]), np.uint32)
    pair_samples(as_words(pairs), 32, seeds, m, np.uint32(2**size - 1), out)
    for row in range(depth):
        for i, pair in enumerate(pairs):
            geometric = reference_murmur3(pair.tobytes(), int(seeds[2 * row]))
            index = reference_murmur3(pair.tobytes(), int(seeds[2 * row + 1])) % m
            value = min(33 - geometric.bit_length(), 2**size - 1)
            assert (int(out[row, i]) >> 16, int(out[row, i]) & 0xFFFF) == (value, index)

"""spread_sketch against brute force: planted spreaders (netspectra.synth) within 10 %, alone and merged.

Truth: distinct (DstIP, SrcIP) pairs of the generator's own ground truth, counted with numpy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netspectra.engine.sketch.spread_sketch import SpreadSketch, SpreadSketchParams
from netspectra.errors import PluginError
from netspectra.model.fields import KeyField, address_bytes
from netspectra.model.snapshot import HitterKind
from netspectra.synth.traffic import TrafficSpec, write_trace

DST, SRC = (KeyField.DST_IP,), (KeyField.SRC_IP,)
THRESHOLD = 500
#: Go-comparable memory: 2^13 x 2 buckets of 536 bytes (Go's SuperSpread bucket: 128 x 4-byte
#: registers + key + counter, ~530 bytes)
GO_MEMORY = {"width": 1 << 13, "depth": 2, "bits": 512, "levels": 8}
FANOUTS = (600, 1500, 4000, 12_000)


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Zipf background plus planted spreaders of several fan-outs (one generator run each), shuffled."""
    dsts, srcs = [], []
    planted: list[bytes] = []
    for index, fanout in enumerate(FANOUTS):
        spec = TrafficSpec(
            packets=60_000 + 2 * fanout, flows=8_000, seed=30 + index, spreaders=2, spreader_fanout=fanout
        )
        truth = write_trace(Path(tmp_path_factory.mktemp("spread")) / "t.pcap", spec)
        # each generator run plants 198.18.k.1; tell the runs apart by their fourth byte
        dst = truth.packets.dst_ip.copy()
        spread_rows = np.isin(dst.view(f"V{dst.shape[1]}").ravel(), [np.void(s) for s in truth.spreaders])
        dst[spread_rows, 15] = index + 2
        planted += [s[:15] + bytes([index + 2]) for s in truth.spreaders]
        dsts.append(dst)
        srcs.append(truth.packets.src_ip)
    dst, src = np.vstack(dsts), np.vstack(srcs)
    order = np.random.default_rng(4).permutation(dst.shape[0])
    dst, src = dst[order], src[order]
    pairs = np.unique(np.hstack((dst, src)), axis=0)
    keys, spread = np.unique(pairs[:, :16], axis=0, return_counts=True)
    truth_spread = {keys[i].tobytes(): int(spread[i]) for i in range(keys.shape[0])}
    return dst, src, truth_spread, planted


def build(dst, src, rows=None) -> SpreadSketch:  # type: ignore[no-untyped-def]
    sketch = SpreadSketch(
        SpreadSketchParams(**GO_MEMORY, count_thereshold=THRESHOLD), flow_fields=DST, element_fields=SRC
    )
    rows = np.arange(dst.shape[0]) if rows is None else rows
    zero = np.zeros(8192, np.uint64)
    for start in range(0, rows.shape[0], 8192):
        chosen = rows[start : start + 8192]
        sketch.insert(dst[chosen], src[chosen], zero[: chosen.shape[0]])
    return sketch


def split(dst, src, parts: int, seed: int) -> list[SpreadSketch]:  # type: ignore[no-untyped-def]
    owner = np.random.default_rng(seed).integers(0, parts, size=dst.shape[0])
    return [build(dst, src, np.flatnonzero(owner == part)) for part in range(parts)]


def merged_from_bytes(sketches: list[SpreadSketch]) -> SpreadSketch:
    merged = SpreadSketch.from_bytes(sketches[0].to_bytes())
    for sketch in sketches[1:]:
        merged.merge(SpreadSketch.from_bytes(sketch.to_bytes()))
    return merged


def reported(sketch: SpreadSketch) -> dict[bytes, int]:
    return {address_bytes(h.flow): h.value for h in sketch.heavy_hitters() if h.kind == HitterKind.SPREAD}


@pytest.mark.parametrize("parts", [1, 2, 3])
def test_every_planted_spreader_within_10_percent(traffic, parts: int) -> None:  # type: ignore[no-untyped-def]
    dst, src, truth, planted = traffic
    sketch = merged_from_bytes(split(dst, src, parts, parts))
    found = reported(sketch)
    for key in planted:
        assert key in found, (key.hex(), truth[key])
        assert abs(found[key] - truth[key]) <= 0.1 * truth[key], (truth[key], found[key])
    true_spreaders = {key for key, value in truth.items() if value >= THRESHOLD}
    assert true_spreaders == set(planted)
    assert set(found) <= true_spreaders | {k for k, v in truth.items() if v >= 0.9 * THRESHOLD}


@pytest.mark.parametrize(("parts", "seed"), [(2, 5), (3, 6)])
def test_merge_of_a_split_stream_is_the_whole_stream_bit_for_bit(traffic, parts, seed) -> None:  # type: ignore[no-untyped-def]
    dst, src, _, _ = traffic
    whole = build(dst, src)
    merged = merged_from_bytes(split(dst, src, parts, seed))
    assert np.array_equal(merged.cells, whole.cells)
    assert merged.heavy_hitters() == whole.heavy_hitters()
    # order and repetition do not matter either: the state depends on the set of pairs only
    again = build(dst[::-1].copy(), src[::-1].copy())
    again.merge(build(dst[:5000], src[:5000]))
    assert np.array_equal(again.cells, whole.cells)


def test_reset_and_round_trip(traffic) -> None:  # type: ignore[no-untyped-def]
    dst, src, _, _ = traffic
    sketch = build(dst[:20_000], src[:20_000])
    data = sketch.to_bytes()
    assert SpreadSketch.from_bytes(data).to_bytes() == data
    assert len(data) < sketch.memory_bytes // 2  # empty high levels and buckets compress
    sketch.reset()
    assert sketch.heavy_hitters() == () and not sketch.query(dst[:100])[HitterKind.SPREAD].any()


def test_merge_refuses_different_parameters_naming_them() -> None:
    one = SpreadSketch(SpreadSketchParams(width=64), flow_fields=DST, element_fields=SRC)
    with pytest.raises(PluginError, match="bits 512 vs 256"):
        one.merge(SpreadSketch(SpreadSketchParams(width=64, bits=256), flow_fields=DST, element_fields=SRC))
    with pytest.raises(PluginError, match="element fields"):
        one.merge(SpreadSketch(SpreadSketchParams(width=64), flow_fields=DST, element_fields=DST))

"""HeavyKeeper against exact per-flow packet counts on a seeded Zipf trace, and its registration."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import numpy as np
import pytest
from netspectra_heavykeeper import HeavyKeeper, HeavyKeeperParams

from netspectra.config.models import Settings
from netspectra.engine.sketch.group import SketchGroup
from netspectra.engine.sketch.registry import load_algorithm
from netspectra.model.fields import KeyField, address_bytes
from netspectra.model.packets import PacketColumns
from netspectra.model.snapshot import HitterKind

K = 50


@pytest.fixture(scope="module")
def trace() -> tuple[np.ndarray, dict[bytes, int]]:
    rng = np.random.default_rng(8)
    flows = 30_000
    weights = np.arange(1, flows + 1, dtype=np.float64) ** -1.1
    ids = rng.choice(flows, size=300_000, p=weights / weights.sum())
    universe = rng.integers(0, 256, size=(flows, 16), dtype=np.uint8)
    keys = universe[ids]
    exact: dict[bytes, int] = {}
    for row in keys:  # ground truth: one packet at a time, no numpy tricks
        exact[row.tobytes()] = exact.get(row.tobytes(), 0) + 1
    return keys, exact


def test_top_k_matches_exact_counts(trace) -> None:  # type: ignore[no-untyped-def]
    keys, exact = trace
    sketch = HeavyKeeper(HeavyKeeperParams(k=K, width=2048, depth=2), flow_fields=(KeyField.SRC_IP,))
    for start in range(0, keys.shape[0], 8192):
        chunk = keys[start : start + 8192]
        sketch.insert(chunk, chunk, np.zeros(chunk.shape[0], np.uint64))
    hitters = sketch.heavy_hitters()
    assert len(hitters) == K and all(h.kind == HitterKind.COUNT for h in hitters)
    reported = {address_bytes(h.flow): h.value for h in hitters}
    true_top = set(sorted(exact, key=exact.__getitem__, reverse=True)[:K])
    assert len(true_top & reported.keys()) / K >= 0.95
    errors = [abs(value - exact[key]) / exact[key] for key, value in reported.items()]
    assert float(np.mean(errors)) <= 0.02
    sketch.reset()
    assert sketch.heavy_hitters() == ()


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="k"):
        HeavyKeeperParams.model_validate({"k": 0})


def installed() -> bool:
    try:
        version("netspectra-heavykeeper")
    except PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not installed(), reason="pip install -e plugins/netspectra-heavykeeper first")
def test_found_through_the_entry_point_and_runs_as_a_task() -> None:
    assert load_algorithm("heavykeeper") is HeavyKeeper
    settings = Settings.model_validate(
        {"aggregator": {"sketch": {"tasks": [
            {"name": "top_src", "algorithm": "heavykeeper", "flow_fields": ["SrcIP"], "k": 2, "width": 64},
        ]}}}
    )  # fmt: skip
    group = SketchGroup.from_config(settings)
    assert group.failed_tasks == {}
    sources = ["10.0.0.1"] * 5 + ["10.0.0.2"] * 3 + ["10.0.0.3"]
    batch = PacketColumns.empty(len(sources))
    for column in (batch.dst_ip, batch.src_port, batch.dst_port, batch.protocol, batch.ts_ns, batch.length):
        column[:] = 0
    batch.src_ip[:] = np.array([list(address_bytes(s)) for s in sources], np.uint8)
    group.insert(batch)
    hitters = group.snapshot(1, 0).sketches[0].hitters
    assert [(h.flow, h.value) for h in hitters] == [("10.0.0.1", 5), ("10.0.0.2", 3)]

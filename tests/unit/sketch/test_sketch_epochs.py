"""Epochs: each snapshot carries the state of what was counted since the previous one.

Truth is a sketch (or a brute-force count) fed only the batches of the epochs concerned; the
group under test never sees it.
"""

from __future__ import annotations

import numpy as np
import pytest

from netspectra.config.models import Settings
from netspectra.engine.sketch.count_min import CountMin, CountMinParams, merge_candidates
from netspectra.engine.sketch.group import SketchGroup
from netspectra.engine.sketch.merging import labelled, merge_states, top_hitters
from netspectra.engine.sketch.protocol import decode_state
from netspectra.engine.sketch.spread_sketch import SpreadSketch
from netspectra.errors import PluginError
from netspectra.model.fields import KeyField
from netspectra.model.packets import PacketColumns
from netspectra.model.snapshot import HitterKind
from tests.unit.sketch.sketch_traffic import exact_totals, f1_and_are, zipf_trace

TASKS = [
    {"name": "cm", "algorithm": "count_min", "flow_fields": ["SrcIP"], "width": 1024, "depth": 2,
     "count_thereshold": 60, "size_thereshold": 60_000},
    {"name": "spread", "algorithm": "spread_sketch", "flow_fields": ["SrcIP"], "element_fields": ["DstIP"],
     "width": 256, "count_thereshold": 20},
    {"name": "go_spread", "skt_type": 1, "flow_fields": ["SrcIP"], "element_fields": ["DstIP"],
     "width": 256, "depth": 2, "count_thereshold": 20},
]  # fmt: skip


def group(include_state: bool = True) -> SketchGroup:
    settings = Settings.model_validate({"aggregator": {"sketch": {"tasks": TASKS}}})
    return SketchGroup(settings.aggregator.sketch.tasks, include_state=include_state)


@pytest.fixture(scope="module")
def batches() -> list[PacketColumns]:
    """Three epochs of Zipf traffic, each with its own heavy sources."""
    out = []
    for seed in (1, 2, 3):
        trace = zipf_trace(packets=20_000, flows=2_000, alpha=1.2, seed=seed)
        batch = PacketColumns.empty(trace.sizes.shape[0])
        for column in (batch.src_port, batch.dst_port, batch.protocol, batch.ts_ns, batch.ip_version):
            column[:] = 0
        batch.src_ip[:] = trace.flow_keys
        batch.dst_ip[:] = trace.element_keys
        batch.length[:] = trace.sizes
        out.append(batch)
    return out


def by_task(results):  # type: ignore[no-untyped-def]
    return {result.task: result for result in results.sketches}


def test_epochs_leave_the_cumulative_hitters_of_spread_sketch_unchanged(batches) -> None:  # type: ignore[no-untyped-def]
    with_epochs, without = group(), group(include_state=False)
    for at, batch in enumerate(batches, start=1):
        with_epochs.insert(batch)
        without.insert(batch)
        ours, theirs = by_task(with_epochs.snapshot(at, 0)), by_task(without.snapshot(at, 0))
        # spread_sketch merges bit for bit; super_spread keeps one sketch for the period
        assert ours["spread"].hitters == theirs["spread"].hitters
        assert ours["go_spread"].hitters == theirs["go_spread"].hitters
        assert ours["go_spread"].state is None and theirs["spread"].state is None
        assert (ours["spread"].epoch, ours["spread"].epoch_start_ns) == (at - 1, at - 1)
        if at == 1:  # the first epoch is the sketch itself: exactly what it counted
            assert ours["cm"].hitters == theirs["cm"].hitters


def test_an_epoch_state_holds_only_that_epoch(batches) -> None:  # type: ignore[no-untyped-def]
    sketches = group()
    states = []
    for at, batch in enumerate(batches, start=1):
        sketches.insert(batch)
        states.append(by_task(sketches.snapshot(at, 0)))
    # spread: the merge of epochs 2 and 3 is, bit for bit, a sketch fed only those batches
    fields = {"flow_fields": (KeyField.SRC_IP,), "element_fields": (KeyField.DST_IP,)}
    alone = SpreadSketch(SpreadSketch.from_bytes(states[0]["spread"].state or b"").params, **fields)
    for batch in batches[1:]:
        alone.insert(batch.src_ip, batch.dst_ip, batch.length)
    window = merge_states(
        "spread", SpreadSketch, [labelled(f"e{i}", states[i]["spread"].state_bytes() or b"") for i in (1, 2)]
    )
    assert isinstance(window, SpreadSketch)
    assert np.array_equal(window.cells, alone.cells)
    # count_min: the linear counters of the window are exactly those of its batches
    cm = [decode_state(states[i]["cm"].state_bytes() or b"") for i in range(3)]
    params = CountMinParams.model_validate(cm[0].params)
    only = CountMin(params, flow_fields=(KeyField.SRC_IP,))
    for batch in batches[1:]:
        only.insert(batch.src_ip, batch.dst_ip, batch.length)
    assert np.array_equal(
        cm[1].arrays["linear"] + cm[2].arrays["linear"], np.stack((only.linear_counts, only.linear_bytes))
    )


def test_the_period_reset_starts_the_epochs_afresh(batches) -> None:  # type: ignore[no-untyped-def]
    sketches = group()
    sketches.insert(batches[0])
    sketches.snapshot(1, 0)
    sketches.reset()
    sketches.insert(batches[1])
    after = by_task(sketches.snapshot(2, 2))
    fresh = group(include_state=False)
    fresh.insert(batches[1])
    assert after["spread"].hitters == by_task(fresh.snapshot(2, 2))["spread"].hitters
    assert after["cm"].hitters == by_task(fresh.snapshot(2, 2))["cm"].hitters
    assert after["cm"].epoch_start_ns == 2  # the period's start, not the previous snapshot


def test_batched_merge_equals_pairwise_and_finds_split_heavy_hitters() -> None:
    trace = zipf_trace(packets=200_000, flows=20_000, alpha=1.1, seed=5)
    counts, _ = exact_totals(trace)
    params = CountMinParams(width=1 << 13, depth=2, count_thereshold=150, size_thereshold=150 * 780)
    states = []
    for part in range(12):  # 3 engines x 4 epochs
        rows = slice(part * 200_000 // 12, (part + 1) * 200_000 // 12)
        sketch = CountMin(params, flow_fields=(KeyField.SRC_IP,))
        sketch.insert(trace.flow_keys[rows], trace.element_keys[rows], trace.sizes[rows])
        states.append(labelled(f"part {part}", sketch.to_bytes()))
    merged = merge_states("cm", CountMin, states)
    candidates = merged.candidates(HitterKind.COUNT)
    estimates = np.minimum(
        merged.upper_bounds(candidates.keys, HitterKind.COUNT), candidates.lower + candidates.missing
    )
    reported = {
        candidates.keys[i].tobytes(): int(estimates[i]) for i in range(len(estimates)) if estimates[i] >= 150
    }
    f1, are = f1_and_are(reported, counts, 150)
    assert f1 >= 0.98 and are < 0.05, (f1, are)
    # one cut at the end keeps at least what pairwise merging (a cut after each pair) keeps
    pairwise = CountMin.from_bytes(states[0].raw)
    for item in states[1:]:
        pairwise.merge(CountMin.from_bytes(item.raw))
    ours = {h.flow for h in top_hitters(merged, HitterKind.COUNT, 10_000)}
    theirs = {h.flow for h in pairwise.heavy_hitters() if h.kind == HitterKind.COUNT}
    assert len(ours ^ theirs) <= 0.02 * len(theirs), (len(ours), len(theirs))
    assert merge_candidates([candidates], 10).keys.shape[0] == 10


def test_states_that_disagree_are_refused_naming_task_states_and_difference() -> None:
    fields = {"flow_fields": (KeyField.SRC_IP,)}
    narrow = CountMin(CountMinParams(width=1024, depth=2), **fields).to_bytes()
    wide = CountMin(CountMinParams(width=2048, depth=2), **fields).to_bytes()
    seeded = CountMin(CountMinParams(width=1024, depth=2, seed=7), **fields).to_bytes()
    for other, difference in ((wide, "width 2048 vs 1024"), (seeded, "seed 7 vs 0")):
        with pytest.raises(PluginError) as refused:
            merge_states("cm_src", CountMin, [labelled("engine 'a'", narrow), labelled("engine 'b'", other)])
        message = str(refused.value)
        assert "'cm_src'" in message and "engine 'a'" in message and "engine 'b'" in message
        assert difference in message
    by_dst = CountMin(CountMinParams(width=1024, depth=2), flow_fields=(KeyField.DST_IP,)).to_bytes()
    with pytest.raises(PluginError, match=r"flow fields \['DstIP'\] vs \['SrcIP'\]"):
        merge_states("cm_src", CountMin, [labelled("a", narrow), labelled("b", by_dst)])

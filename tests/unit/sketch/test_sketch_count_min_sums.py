"""count_min sums: a merge kept in parts (``sum_states``/``from_sums``) is ``merge_states`` bit for bit.

The query store keeps the sums of runs of epochs and adds them later; that is only allowed if
every grouping gives the merged sketch a single ``merge_states`` gives. The truth here is
``merge_states`` itself (linear counters, candidate keys, lower bounds, allowances, floors and
the hitters read from them), over random groupings, nestings and both kinds.
"""

from __future__ import annotations

import numpy as np
import pytest

from netspectra.engine.sketch.count_min import CountMin, CountMinParams
from netspectra.engine.sketch.merging import LabelledState, labelled, merge_states
from netspectra.model.fields import KeyField
from netspectra.model.snapshot import HitterKind
from tests.unit.sketch.sketch_traffic import zipf_trace

PARAMS = CountMinParams(width=1024, depth=2, count_thereshold=30, size_thereshold=30_000, candidates=128)


@pytest.fixture(scope="module")
def states() -> list[LabelledState]:
    out = []
    for seed in range(18):
        trace = zipf_trace(packets=4_000, flows=3_000, alpha=1.1, seed=100 + seed % 6)  # epochs share flows
        sketch = CountMin(PARAMS, flow_fields=(KeyField.SRC_IP,))
        sketch.insert(trace.flow_keys, trace.element_keys, trace.sizes)
        out.append(labelled(f"epoch {seed}", sketch.to_bytes()))
    return out


def assert_same(expected: CountMin, got: CountMin, kinds: list[HitterKind]) -> None:
    assert np.array_equal(expected.linear_counts, got.linear_counts)
    assert np.array_equal(expected.linear_bytes, got.linear_bytes)
    for kind in kinds:
        ours, theirs = expected.candidates(kind), got.candidates(kind)
        assert ours.floor == theirs.floor
        for name in ("keys", "lower", "missing"):
            assert np.array_equal(getattr(ours, name), getattr(theirs, name)), name
        assert expected.top_hitters(kind, 1_000) == got.top_hitters(kind, 1_000)
        assert expected.top_hitters(kind, 1_000)  # the comparison is not of two empty lists


@pytest.mark.parametrize(
    "kinds", [[HitterKind.COUNT], [HitterKind.SIZE], [HitterKind.COUNT, HitterKind.SIZE]]
)
def test_any_grouping_of_the_sums_is_the_merge(states: list[LabelledState], kinds: list[HitterKind]) -> None:
    expected = merge_states("t", CountMin, states, kinds)
    assert isinstance(expected, CountMin)
    rng = np.random.default_rng(5)
    for _ in range(12):
        cuts = np.sort(rng.choice(np.arange(1, len(states)), rng.integers(0, 6), replace=False))
        groups = np.split(np.arange(len(states)), cuts)
        parts = [CountMin.sum_states([states[i].state for i in group], kinds) for group in groups]
        # all parts added; and all but the last added with the last group's states
        whole = CountMin.sum_states([], kinds, parts)
        assert_same(expected, CountMin.from_sums(states[0].state, whole), kinds)
        mixed = CountMin.sum_states([states[i].state for i in groups[-1]], kinds, parts[:-1])
        assert_same(expected, CountMin.from_sums(states[0].state, mixed), kinds)
        # sums of sums: the parts nested two deep
        nested = [CountMin.sum_states([], kinds, parts[i : i + 2]) for i in range(0, len(parts), 2)]
        assert_same(
            expected, CountMin.from_sums(states[3].state, CountMin.sum_states([], kinds, nested)), kinds
        )


def test_one_state_alone_is_its_merge(states: list[LabelledState]) -> None:
    kinds = [HitterKind.COUNT, HitterKind.SIZE]
    expected = merge_states("t", CountMin, states[:1], kinds)
    assert isinstance(expected, CountMin)
    assert_same(
        expected,
        CountMin.from_sums(states[0].state, CountMin.sum_states([states[0].state], kinds)),
        kinds,
    )


def test_nothing_to_add_is_refused() -> None:
    with pytest.raises(ValueError, match="no states"):
        CountMin.sum_states([], [HitterKind.COUNT])

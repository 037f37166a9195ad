"""The sketch-state reader's caches (merged sketches, sums of runs of epochs) never change an answer.

A reader kept across many queries (repeated, sliding, growing, overlapping windows, both kinds,
one corrupted row) must answer each exactly as ``merge_states`` + ``top_hitters`` over the states
of that window answer (the truth, computed here without the reader), and read each state's bytes
from the store once. The store is a table in memory answering the reader's two SELECTs with the
rows whose Timestamp lies in (start, end], as the SQL in ``storage/sql.py`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from netspectra.engine.sketch.count_min import CountMin, CountMinParams
from netspectra.engine.sketch.merging import labelled, merge_states, top_hitters
from netspectra.model.fields import KeyField
from netspectra.model.snapshot import HitterKind
from netspectra.storage.states import RUN_EPOCHS, SketchStateReader
from tests.unit.sketch.sketch_traffic import zipf_trace

T = 1_700_000_000
ENGINES, EPOCHS = 3, 2 * RUN_EPOCHS + 3
PARAMS = CountMinParams(width=512, depth=2, count_thereshold=20, size_thereshold=20_000, candidates=64)
CORRUPT = ("e1", 5)


class MemoryStore:
    """sketch_states rows in memory; counts the state bytes it hands out, per row."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, int, int, int, bytes]] = []  # engine, period, epoch, timestamp, state
        self.bytes_read: dict[tuple[str, int], int] = {}
        for engine in range(ENGINES):
            for epoch in range(EPOCHS):
                trace = zipf_trace(packets=1_500, flows=800, alpha=1.1, seed=engine * 100 + epoch % 7)
                sketch = CountMin(PARAMS, flow_fields=(KeyField.SRC_IP,))
                sketch.insert(trace.flow_keys, trace.element_keys, trace.sizes)
                state = sketch.to_bytes()
                if (f"e{engine}", epoch) == CORRUPT:
                    state = state[:-9] + bytes([state[-9] ^ 0xFF]) + state[-8:]  # the CRC no longer matches
                self.rows.append((f"e{engine}", T, epoch, T + 10 * (epoch + 1), state))

    async def select(self, text: str, params: Mapping[str, Any] | None) -> list[tuple[Any, ...]]:
        assert params is not None and params["task"] == "cm"
        if "sketch_state_runs" in text:
            return []  # no runs of epochs stored (tests/integration/test_sketch_state_runs.py has them)
        start, end = params.get("start", -1), params.get("end", 1 << 62)
        with_state = "hex(State)" in text
        out: list[tuple[Any, ...]] = []
        for engine, period, epoch, at, state in self.rows:
            if start < at <= end:
                row: tuple[Any, ...] = (engine, period, epoch, at, "count_min", len(state),
                                        int.from_bytes(state[-4:], "little"))  # fmt: skip
                if with_state:
                    row += (state.hex(),)
                    self.bytes_read[(engine, epoch)] = self.bytes_read.get((engine, epoch), 0) + 1
                out.append(row)
        return out

    def truth(self, kind: HitterKind, limit: int, start: int, end: int) -> list[tuple[str, int]]:
        chosen = [
            labelled(f"{engine} {epoch}", state)
            for engine, _, epoch, at, state in self.rows
            if start < at <= end and (engine, epoch) != CORRUPT
        ]
        if not chosen:
            return []
        sketch = merge_states("cm", CountMin, chosen, [kind])
        return [(hitter.flow, hitter.value) for hitter in top_hitters(sketch, kind, limit)]


def at(epoch: int) -> int:
    """The Timestamp of ``epoch``; a window (at(a) - 1, at(b)] holds epochs a..b."""
    return T + 10 * (epoch + 1)


@pytest.mark.parametrize("kind", [HitterKind.COUNT, HitterKind.SIZE])
async def test_kept_merges_answer_every_window_as_a_fresh_merge(kind: HitterKind) -> None:
    store = MemoryStore()
    reader = SketchStateReader(store.select)
    rng = np.random.default_rng(9)
    windows = [(0, EPOCHS - 1)] * 2  # a repeat
    windows += [(first, first + RUN_EPOCHS + 1) for first in range(EPOCHS - RUN_EPOCHS - 1)]  # sliding
    windows += [(0, last) for last in range(EPOCHS)]  # growing
    windows += [tuple(sorted(rng.integers(0, EPOCHS, 2))) for _ in range(20)]  # anywhere
    asked = 0
    for first, last in windows:
        for limit in (5, 50):
            got = await reader.heavy_hitters("cm", kind, limit, at(last), at(first) - 1)
            truth = store.truth(kind, limit, at(first) - 1, at(last))
            assert got == truth, (first, last, limit)
            asked += bool(truth)
    assert asked > len(windows)  # most windows have hitters: the comparisons are not of empty lists
    # every state's bytes were read from the store once; the corrupted one was counted once
    assert set(store.bytes_read) == {(engine, epoch) for engine, _, epoch, _, _ in store.rows}
    assert set(store.bytes_read.values()) == {1}
    assert reader.corrupt_states == 1


async def test_small_caches_evict_and_still_answer_the_same() -> None:
    store = MemoryStore()
    reader = SketchStateReader(store.select, cache_bytes=1, merged_bytes=1, run_bytes=1)
    for first, last in [(0, EPOCHS - 1), (2, 12), (0, EPOCHS - 1), (3, 4)]:
        got = await reader.heavy_hitters("cm", HitterKind.COUNT, 20, at(last), at(first) - 1)
        assert got == store.truth(HitterKind.COUNT, 20, at(first) - 1, at(last))

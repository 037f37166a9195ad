"""The state reader through a binary select (what both backends offer): the same answers as the hex one.

The binary select reads the stored rows as they are (no GROUP BY), so a row a retried insert
stored twice comes twice and must be decoded and counted once; asynch hands some String values
over as ``bytearray``. Truth: ``merge_states`` + ``top_hitters`` over the window's states
(:class:`MemoryStore` of the cache tests), and the hex reader's answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from netspectra.model.snapshot import HitterKind
from netspectra.storage import sql
from netspectra.storage.states import SketchStateReader
from tests.unit.storage.test_storage_state_reader_caches import EPOCHS, MemoryStore, at


class BinaryStore(MemoryStore):
    """Answers STATE_BYTES as a store of raw rows does: every row, bytes (some bytearray), twice."""

    def __init__(self) -> None:
        super().__init__()
        self.binary_reads = 0

    async def select_binary(self, text: str, params: Mapping[str, Any] | None) -> list[tuple[Any, ...]]:
        if text == sql.RUN_BYTES:
            return []  # no runs of epochs stored
        assert text == sql.STATE_BYTES and params is not None and params["task"] == "cm"
        self.binary_reads += 1
        out: list[tuple[Any, ...]] = []
        for index, (engine, period, epoch, timestamp, state) in enumerate(self.rows):
            if params["start"] < timestamp <= params["end"]:
                row = (engine.encode(), period, epoch, int.from_bytes(state[-4:], "little"),
                       bytearray(state) if index % 3 == 0 else state)  # fmt: skip
                out += [row, row] if index % 4 == 0 else [row]  # a retried insert's duplicate
                self.bytes_read[(engine, epoch)] = self.bytes_read.get((engine, epoch), 0) + 1
        return out


@pytest.mark.parametrize("kind", [HitterKind.COUNT, HitterKind.SIZE])
async def test_a_binary_select_answers_as_the_truth_and_the_hex_reader(kind: HitterKind) -> None:
    store = BinaryStore()
    reader = SketchStateReader(store.select, select_binary=store.select_binary)
    hex_reader = SketchStateReader(MemoryStore().select)
    for first, last in [(0, EPOCHS - 1), (2, 9), (5, 5), (0, EPOCHS - 1)]:
        got = await reader.heavy_hitters("cm", kind, 50, at(last), at(first) - 1)
        assert got == store.truth(kind, 50, at(first) - 1, at(last)), (first, last)
        assert got == await hex_reader.heavy_hitters("cm", kind, 50, at(last), at(first) - 1)
        assert got
    assert store.binary_reads >= 1
    assert set(store.bytes_read.values()) == {1}  # each state's bytes read once over all windows
    assert reader.corrupt_states == 1  # the corrupted row, once, though it came twice

"""insert_blocks: the blocks and the held-back first row are the snapshot's rows, each once, in order."""

from __future__ import annotations

import pyarrow as pa
import pytest

from netspectra.storage import rows as rows_module
from netspectra.storage.rows import as_arrow, insert_blocks


def columns(count: int) -> dict[str, pa.Array]:
    return {
        "Timestamp": as_arrow("Timestamp", [1000] * count),
        "TaskName": as_arrow("TaskName", [f"t{index % 3}" for index in range(count)]),
        "SrcPort": as_arrow("SrcPort", [None if index % 4 == 0 else index for index in range(count)]),
    }


@pytest.mark.parametrize(("count", "streams"), [(1_000, 2), (1_000, 3), (1_001, 4), (650, 2)])
def test_the_blocks_and_the_last_one_are_every_row_once(
    monkeypatch: pytest.MonkeyPatch, count: int, streams: int
) -> None:
    monkeypatch.setattr(rows_module, "MIN_INSERT_BLOCK_ROWS", 300)
    given = columns(count)
    blocks, last = insert_blocks(given, streams)
    assert last is not None and 2 <= len(blocks) <= streams
    assert all(len(block["Timestamp"]) >= 300 for block in blocks)
    for name, column in given.items():
        assert last[name].to_pylist() == column.to_pylist()[:1]  # the first row, held back
        assert [value for block in blocks for value in block[name].to_pylist()] == column.to_pylist()[1:]


@pytest.mark.parametrize(("count", "streams"), [(599, 4), (1_000, 1), (0, 2)])
def test_too_few_rows_or_one_stream_is_one_block(
    monkeypatch: pytest.MonkeyPatch, count: int, streams: int
) -> None:
    monkeypatch.setattr(rows_module, "MIN_INSERT_BLOCK_ROWS", 300)
    given = columns(count)
    assert insert_blocks(given, streams) == ([given], None)

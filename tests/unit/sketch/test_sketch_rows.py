"""run_rows: every row runs exactly once, rows 1.. on other threads, a row's error reaches the caller."""

from __future__ import annotations

import threading

import pytest

from netspectra.engine.sketch.rows import run_rows


def test_every_row_once_on_its_own_thread() -> None:
    seen: dict[int, str] = {}
    lock = threading.Lock()

    def update_row(row: int) -> None:
        with lock:
            assert row not in seen
            seen[row] = threading.current_thread().name

    run_rows(3, update_row)
    assert seen[0] == threading.current_thread().name
    assert seen[1] == "sketch-row-1" and seen[2] == "sketch-row-2"


def test_an_error_in_another_row_is_raised_after_all_rows_finished() -> None:
    finished: list[int] = []

    def update_row(row: int) -> None:
        if row == 1:
            raise ValueError("row 1 broke")
        finished.append(row)

    with pytest.raises(ValueError, match="row 1 broke"):
        run_rows(3, update_row)
    assert sorted(finished) == [0, 2]

"""Runs of epochs (sketch_state_runs) through a real store: an answer never depends on them.

Both backends and the cluster layout. Two "engines" (writers with their own engine ids over one
store, each fed by its own SketchGroup, which closes runs as the engine makes it: every 8th epoch
and at the period's end through ``snapshot_closing_period``) count 20 epochs in two periods: period
A is epochs 0-10 (runs 0-7 and 8-10, short), period B 11-19 (run 11-15, short, and 16-19, never
closed: the engine stopped mid-run). Every task is counted twice with the same parameters and the
same packets, so the epoch rows of ``X`` and ``X_plain`` are the same bytes: ``X`` is written with
its runs, ``X_plain`` without. The truth of every answer of ``X`` is the answer of ``X_plain``
(the store without runs, which the other tests check against brute force), over windows that
hold whole runs, cut runs and none. ``cm``'s runs are damaged on purpose:

* engine a, run 11-15: its state's bytes corrupted (the reader must skip, count and log it);
* engine b, run 0-7: a wrong run, the merge of epochs 0-6 only, stored as covering 0-7 (a reader
  that took a run without checking its digest against the epoch rows would miss epoch 7);
* engine b, run 8-10: never stored (a writer that died between the epochs and the run).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from netspectra.engine.sketch.count_min import CountMin
from netspectra.engine.sketch.merging import labelled
from netspectra.engine.sketch.runs import RUN_EPOCHS, run_state
from netspectra.model.snapshot import DeferredState, HitterKind, Snapshot
from netspectra.storage.query import QueryStore
from netspectra.storage.sql import SqlBackend
from tests.integration.test_sketch_states_store import NS, T, as_batch, backend_for, group, write
from tests.unit.sketch.sketch_traffic import zipf_trace

EPOCHS = 20
RESET_AFTER = 10  # the last epoch of period A
PERIOD_B = T + 10 * (RESET_AFTER + 1)
CM = {"algorithm": "count_min", "flow_fields": ["SrcIP"], "width": 1024, "depth": 2,
      "count_thereshold": 30, "size_thereshold": 30 * 780, "candidates": 96}  # fmt: skip
SPREAD = {"algorithm": "spread_sketch", "flow_fields": ["SrcIP"], "element_fields": ["DstIP"],
          "width": 256, "count_thereshold": 20}  # fmt: skip
TASKS = [{"name": "cm", **CM}, {"name": "cm_plain", **CM}, {"name": "spread", **SPREAD},
         {"name": "spread_plain", **SPREAD}]  # fmt: skip
#: (engine, first epoch of the run) -> what happens to cm's run
CORRUPT, WRONG, MISSING = ("a", 11), ("b", 0), ("b", 8)


def at(epoch: int) -> int:
    """The Timestamp of ``epoch``: a window (at(a) - 1, at(b)] holds epochs a..b."""
    return T + 10 * (epoch + 1)


def counted(seed: int) -> list[list[Snapshot]]:
    """Both engines' snapshots, an epoch each, the period reset after epoch RESET_AFTER."""
    groups = [group(TASKS) for _ in range(2)]
    rng = np.random.default_rng(seed)
    out: list[list[Snapshot]] = [[], []]
    for epoch in range(EPOCHS):
        trace = zipf_trace(packets=6_000, flows=900, alpha=1.1, seed=seed * 1000 + epoch)
        batch = as_batch(trace.flow_keys, trace.element_keys, trace.sizes)
        owner = rng.integers(0, 2, len(batch))
        period = T if epoch <= RESET_AFTER else PERIOD_B
        for part, sketches in enumerate(groups):
            rows = np.flatnonzero(owner == part)
            sketches.insert(as_batch(batch.src_ip[rows], batch.dst_ip[rows], batch.length[rows]))
            taken = at(epoch) * NS
            if epoch == RESET_AFTER:  # what Engine._snapshot_groups does at a period's end
                out[part].append(sketches.snapshot_closing_period(taken, period * NS))
                sketches.reset()
            else:
                out[part].append(sketches.snapshot(taken, period * NS))
    return out


def damaged(engine: str, snapshot: Snapshot) -> Snapshot:
    """``snapshot`` as written: no runs for the ``_plain`` tasks, cm's runs damaged as listed above."""
    results = []
    for result in snapshot.sketches:
        run = result.run
        if run is not None and result.task.endswith("_plain"):
            run = None
        elif run is not None and result.task == "cm":
            where = (engine, run.first_epoch)
            if where == MISSING:
                run = None
            elif where == CORRUPT:
                good = run.state()
                assert good is not None
                broken = bytearray(good)
                broken[len(broken) // 2] ^= 0xFF
                run = dataclasses.replace(run, state=DeferredState(lambda data=bytes(broken): data))
            elif where == WRONG:
                short = run.epochs[:-1]  # the merge of epochs 0-6, stored as covering 0-7
                states = [labelled(str(epoch), made() or b"") for epoch, made in short]
                merged = run_state("cm", CountMin, states)
                run = dataclasses.replace(run, epochs=short, state=DeferredState(lambda data=merged: data))
        results.append(dataclasses.replace(result, run=run))
    return dataclasses.replace(snapshot, sketches=tuple(results))


@pytest.fixture(params=["clickhouse", "clickhouse-cluster", "embedded"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlBackend]:
    store = backend_for(request.param, tmp_path, request)
    for engine, snapshots in zip(("a", "b"), counted(seed=5), strict=True):
        await write(store, tmp_path, engine, [damaged(engine, snapshot) for snapshot in snapshots])
    try:
        yield store
    finally:
        await store.close()


async def answer(query: QueryStore, task: str, kind: HitterKind, start: int | None, end: int | None) -> Any:
    return await query.states.heavy_hitters(task, kind, 10_000, end, start)


WINDOWS: list[tuple[int | None, int | None]] = [
    (at(0) - 1, at(EPOCHS - 1)),  # everything: whole runs, the open one read as epochs
    (at(0) - 1, at(RESET_AFTER)),  # period A: runs 0-7 and 8-10
    (at(3) - 1, at(12)),  # cuts runs 0-7 and 11-15 (their last epochs' Timestamps inside)
    (at(8) - 1, at(15)),  # runs 8-10 and 11-15 whole, across the period boundary
    (at(1) - 1, at(7)),  # run 0-7 without its first epoch
    (at(16) - 1, at(EPOCHS - 1)),  # only the run that never closed
    (None, None),  # since period B began: run 11-15 and the open run
    (None, at(9)),  # period A up to epoch 9: cuts run 8-10
    (None, at(RESET_AFTER)),  # period A whole
]


async def test_answers_with_runs_equal_answers_without_them(
    backend: SqlBackend, caplog: pytest.LogCaptureFixture
) -> None:
    query = QueryStore(backend, description="runs")
    compared = 0
    with caplog.at_level(logging.WARNING, logger="netspectra.storage.states"):
        for start, end in WINDOWS:
            for task, kinds in (
                ("cm", (HitterKind.COUNT, HitterKind.SIZE)),
                ("spread", (HitterKind.SPREAD,)),
            ):
                for kind in kinds:
                    fresh = QueryStore(backend, description="fresh")  # nothing kept: every run read cold
                    plain = await answer(fresh, f"{task}_plain", kind, start, end)
                    assert fresh.states.runs_read == 0  # the _plain tasks have no runs
                    assert await answer(fresh, task, kind, start, end) == plain, (task, kind, start, end)
                    assert await answer(query, task, kind, start, end) == plain, (task, kind, start, end)
                    compared += bool(plain)
    assert compared >= len(WINDOWS) * 2  # the answers compared are not empty lists
    # one corrupted run (cm, engine a, 11-15), counted once by the long-lived reader, and logged
    assert query.states.corrupt_states == 1
    assert any("epochs 11-15" in r.getMessage() and "unreadable" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("task", "start", "end", "runs"),
    [
        # spread: every closed run whole in the window is read: 0-7, 8-10, 11-15 of both engines
        ("spread", at(0) - 1, at(EPOCHS - 1), 6),
        ("spread", at(0) - 1, at(RESET_AFTER), 4),
        ("spread", at(3) - 1, at(12), 2),  # 8-10 only: 0-7 and 11-15 are cut by the window
        ("spread", None, None, 2),  # period B: 11-15 of both
        ("spread", None, at(9), 2),  # period A up to epoch 9: 0-7 of both, 8-10 cut
        # cm: engine a's 0-7 and 8-10 and engine b's 11-15 (the others are damaged: epochs instead)
        ("cm", at(0) - 1, at(EPOCHS - 1), 3),
        ("cm", None, None, 1),
    ],
)
async def test_the_reader_reads_exactly_the_runs_that_cover_their_epochs(
    backend: SqlBackend, task: str, start: int | None, end: int | None, runs: int
) -> None:
    query = QueryStore(backend, description="runs")
    plain = await answer(
        query, f"{task}_plain", HitterKind.COUNT if task == "cm" else HitterKind.SPREAD, start, end
    )
    kind = HitterKind.COUNT if task == "cm" else HitterKind.SPREAD
    assert await answer(query, task, kind, start, end) == plain
    assert query.states.runs_read == runs


async def test_the_stored_runs_are_the_closed_runs_of_each_period(backend: SqlBackend) -> None:
    rows = await backend.select(
        "SELECT EngineId, toUInt32(PeriodStart), FirstEpoch, LastEpoch, toUInt32(Timestamp)"
        " FROM sketch_state_runs WHERE TaskName = {task:String} ORDER BY EngineId, FirstEpoch",
        {"task": "spread"},
    )
    closed = [
        (T, 0, RUN_EPOCHS - 1),
        (T, RUN_EPOCHS, RESET_AFTER),
        (PERIOD_B, RESET_AFTER + 1, 2 * RUN_EPOCHS - 1),
    ]
    expected = [(period, first, last, at(last)) for period, first, last in closed]
    by_engine: dict[str, list[tuple[int, ...]]] = {}
    for engine, *rest in rows:
        by_engine.setdefault(str(engine).partition("@")[0], []).append(tuple(int(value) for value in rest))
    assert by_engine == {"a": expected, "b": expected}

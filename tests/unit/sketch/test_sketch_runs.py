"""Runs of epochs made by the engine: which snapshots close one, and what a run's state holds.

Driven through the Engine with a manual clock (the period's end closes a run early, through
``snapshot_closing_period``). Truth: a run's state must merge exactly as its epochs' states do
(the merge of the epochs, bit for bit: count_min's ``sum_states``/``from_sums``, spread_sketch's
exact merge), and its epochs are the snapshots' own epoch states.
"""

from __future__ import annotations

import numpy as np

from netspectra.config.models import WriterConfig
from netspectra.engine.engine import Engine
from netspectra.engine.sketch.count_min import CountMin
from netspectra.engine.sketch.merging import labelled, merge_states, top_hitters
from netspectra.engine.sketch.runs import RUN_EPOCHS, closes_run, covers, run_index, state_check
from netspectra.engine.sketch.spread_sketch import SpreadSketch
from netspectra.model.snapshot import HitterKind
from netspectra.storage.rows import run_rows
from tests.unit.engine.test_engine_schedule import ManualClock, RecordingWriter
from tests.unit.sketch.test_sketch_epochs import batches as batches  # the fixture
from tests.unit.sketch.test_sketch_epochs import group

S = 1_000_000_000
PERIOD = 11 * 10  # 11 epochs of 10 s: epochs 0-10, then a new period from epoch 11


async def test_runs_close_every_8th_epoch_and_at_the_period_end(batches) -> None:  # type: ignore[no-untyped-def]
    clock = ManualClock()
    start = clock.now
    writer = RecordingWriter()
    engine = Engine(
        {"sketch": group()},
        {"sketch": [(WriterConfig(type="file", snapshot_interval=10), writer)]},
        period_s=PERIOD,
        clock=clock,
    )
    await engine.start(schedule=False)
    for epoch in range(20):
        await engine.ingest(batches[epoch % len(batches)])
        clock.now = start + 10 * (epoch + 1) * S
        await engine.run_due()
    await engine.close()
    snapshots = writer.snapshots[:20]  # the close's final snapshot adds an epoch of nothing
    closed = {}
    for snapshot in snapshots:
        for result in snapshot.sketches:
            if result.run is not None:
                closed.setdefault(result.task, []).append((result.run.first_epoch, result.run.last_epoch))
    # go_spread (super_spread) cannot merge: no epochs, no runs; epoch 10 ends period A early
    assert closed == {"cm": [(0, 7), (8, 10), (11, 15)], "spread": [(0, 7), (8, 10), (11, 15)]}
    for snapshot in snapshots:
        for result in snapshot.sketches:
            if result.run is not None:
                assert closes_run(result.run.last_epoch) or result.run.last_epoch == 10
                assert run_index(result.run.first_epoch) == run_index(result.run.last_epoch)

    # a run's state merges as its epochs' states do, and its row covers exactly them
    epoch_states = {
        (result.task, result.epoch): result.state_bytes()
        for snapshot in snapshots
        for result in snapshot.sketches
    }
    checked = 0
    for snapshot in snapshots:
        rows = run_rows(snapshot, "e")
        for index, task in enumerate(rows["TaskName"].to_pylist()):
            first, last = rows["FirstEpoch"][index].as_py(), rows["LastEpoch"][index].as_py()
            epochs = [(epoch, epoch_states[(task, epoch)] or b"") for epoch in range(first, last + 1)]
            assert rows["Covers"][index].as_py() == covers(
                (epoch, state_check(data)) for epoch, data in epochs
            )
            assert rows["Timestamp"][index].as_py() == snapshot.taken_at_ns // S
            assert rows["FirstTimestamp"][index].as_py() == (start + 10 * (first + 1) * S) // S
            run = labelled("run", rows["State"][index].as_py())
            parts = [labelled(str(epoch), data) for epoch, data in epochs]
            if task == "cm":
                for kind in (HitterKind.COUNT, HitterKind.SIZE):
                    whole = CountMin.from_sums(
                        parts[0].state, CountMin.sum_states([p.state for p in parts], [kind])
                    )
                    read = CountMin.from_sums(run.state, CountMin.sum_states([run.state], [kind]))
                    assert top_hitters(read, kind, 1000) == top_hitters(whole, kind, 1000)
                    assert np.array_equal(read.linear_counts, whole.linear_counts)
            else:
                whole_s = merge_states(task, SpreadSketch, parts)
                read_s = merge_states(task, SpreadSketch, [run])
                assert isinstance(whole_s, SpreadSketch) and isinstance(read_s, SpreadSketch)
                assert np.array_equal(read_s.cells, whole_s.cells)
            checked += 1
    assert checked == 6
    assert RUN_EPOCHS == 8  # the expectations above are written for runs of 8

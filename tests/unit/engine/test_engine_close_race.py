"""close() during a period reset keeps the closing snapshot; a slow writer gets the newest snapshot."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from netspectra.config.models import ExactTaskConfig, WriterConfig
from netspectra.engine.engine import Engine
from netspectra.engine.exact import ExactGroup
from netspectra.model.snapshot import Snapshot
from tests.unit.engine.engine_helpers import brute_force, random_batch
from tests.unit.engine.test_engine_schedule import FIELDS, ManualClock, RecordingWriter, S, flows


class GatedGroup:
    """A real ExactGroup whose snapshots wait for ``gate`` (a slow snapshot in the worker thread)."""

    def __init__(self) -> None:
        self.inner = ExactGroup([ExactTaskConfig(name="t", key_fields=FIELDS)])
        self.gate = threading.Event()
        self.entered = threading.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def snapshot(self, **kwargs: int) -> Snapshot:
        self.entered.set()
        self.gate.wait(5)
        return self.inner.snapshot(**kwargs)


async def test_close_during_a_period_reset_keeps_the_closing_snapshot() -> None:
    clock = ManualClock()
    batch = random_batch(np.random.default_rng(31), 800)
    group, writer = GatedGroup(), RecordingWriter()
    engine = Engine(
        {"exact": group},
        {"exact": [(WriterConfig(type="file", snapshot_interval=3600), writer)]},
        period_s=60,
        clock=clock,
        kernel_threads=1,
    )
    await engine.start()
    await engine.ingest(batch)
    clock.now += 61 * S  # the scheduler's next step resets the period
    while not group.entered.is_set():
        await asyncio.sleep(0.01)
    closing = asyncio.create_task(engine.close())  # lands while run_due waits for the reset
    while not engine._stop.is_set():  # close() has begun: it now waits for the scheduler's step
        await asyncio.sleep(0)
    group.gate.set()
    await closing
    assert [flows(s) for s in writer.snapshots] == [brute_force([batch], FIELDS), {}]


class SlowWriter(RecordingWriter):
    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def write(self, snapshot: Snapshot) -> None:
        await self.gate.wait()
        await super().write(snapshot)


async def test_a_slow_writer_gets_the_newest_snapshot_not_a_stale_one() -> None:
    clock = ManualClock()
    t0 = clock.now
    rng = np.random.default_rng(32)
    b1, b2, b3 = (random_batch(rng, 500) for _ in range(3))
    writer = SlowWriter()
    engine = Engine(
        {"exact": ExactGroup([ExactTaskConfig(name="t", key_fields=FIELDS)])},
        {"exact": [(WriterConfig(type="file", snapshot_interval=10), writer)]},
        period_s=3600,
        clock=clock,
        kernel_threads=1,
    )
    await engine.start(schedule=False)
    for step, batch in enumerate((b1, b2, b3), start=1):
        await engine.ingest(batch)
        clock.now = t0 + 10 * step * S
        await engine.run_due()
        await asyncio.sleep(0)  # the writer takes the first snapshot and blocks on it
    writer.gate.set()
    await engine.close()
    assert [flows(s) for s in writer.snapshots] == [
        brute_force([b1], FIELDS),
        brute_force([b1, b2, b3], FIELDS),  # replaced the waiting b1+b2 snapshot
        brute_force([b1, b2, b3], FIELDS),  # the final one
    ]


async def test_a_slow_writer_loses_no_sketch_epoch() -> None:
    """Each sketch snapshot carries only its own epoch's state: none may be replaced by a newer one."""
    from netspectra.config.models import Settings
    from netspectra.engine.sketch.group import SketchGroup
    from netspectra.engine.sketch.merging import labelled, merge_states
    from netspectra.engine.sketch.spread_sketch import SpreadSketch

    tasks = [{"name": "spread", "algorithm": "spread_sketch", "flow_fields": ["SrcIP"],
              "element_fields": ["DstIP"], "width": 64, "count_thereshold": 1}]  # fmt: skip
    settings = Settings.model_validate({"aggregator": {"sketch": {"tasks": tasks}}})
    clock = ManualClock()
    t0 = clock.now
    rng = np.random.default_rng(33)
    batches = [random_batch(rng, 500) for _ in range(3)]
    writer = SlowWriter()
    engine = Engine(
        {"sketch": SketchGroup(settings.aggregator.sketch.tasks)},
        {"sketch": [(WriterConfig(type="file", snapshot_interval=10), writer)]},
        period_s=3600,
        clock=clock,
        kernel_threads=1,
    )
    await engine.start(schedule=False)
    for step, batch in enumerate(batches, start=1):
        await engine.ingest(batch)
        clock.now = t0 + 10 * step * S
        await engine.run_due()
        await asyncio.sleep(0)
    writer.gate.set()
    await engine.close()
    states = [s.sketches[0].state_bytes() for s in writer.snapshots]
    assert len(states) == 4 and all(states)  # three epochs and the (empty) final one
    merged = merge_states("spread", SpreadSketch, [labelled(str(i), s or b"") for i, s in enumerate(states)])
    whole = SpreadSketch(merged.params, flow_fields=merged.flow_fields, element_fields=merged.element_fields)  # type: ignore[attr-defined]
    for batch in batches:
        whole.insert(batch.src_ip, batch.dst_ip, batch.length)
    assert np.array_equal(merged.cells, whole.cells)  # type: ignore[attr-defined]

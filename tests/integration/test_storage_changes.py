"""Change snapshots through the store writers, on both backends: AggregateFlows and TraceFlow
answer what full snapshots answer.

The engine feeds a real store writer (only changed flows) and, beside it, an in-memory writer of
full snapshots; the truth is a brute-force evaluation of Go's rule over the full snapshots (per
flow the row with the largest snapshot second ≤ end, then sums). A period reset leaves flows
behind that must still count with their old rows.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from netspectra.config.models import ExactTaskConfig, WriterConfig
from netspectra.engine.engine import Engine
from netspectra.engine.exact import ExactGroup
from netspectra.model.fields import FIELD_ORDER, KeyField
from netspectra.model.snapshot import Snapshot
from netspectra.storage.query import FlowFilter, QueryStore, TaskTotals
from netspectra.storage.spool import QueuedWriter, SnapshotSpool
from tests.integration.test_storage_latest import RecordingBackend, backend
from tests.unit.engine.engine_helpers import random_batch
from tests.unit.engine.test_engine_schedule import ManualClock, RecordingWriter
from tests.unit.engine.test_engine_snapshot_changes import latest_at, rows_of

__all__ = ["backend"]  # the two-backend fixture

S = 1_000_000_000


class SeenWriter(QueuedWriter):
    """The store writer, remembering which snapshots the engine handed it (a slow writer's
    waiting snapshot is replaced by a newer one: the store then holds those instants only)."""

    seen: list[int]

    async def write(self, snapshot: Snapshot) -> None:
        self.seen.append(snapshot.taken_at_ns)
        await super().write(snapshot)


TASKS = {"src": (KeyField.SRC_IP,), "five": FIELD_ORDER, "dport": (KeyField.DST_PORT,)}


async def handed_over(engine: Engine, writer: QueuedWriter, snapshots: int) -> None:
    """Wait until ``writer`` has accepted (or the engine skipped) ``snapshots`` snapshots.

    A change snapshot starts where the writer's last *accepted* one ended, so one taken while
    the previous write is still in flight repeats its flows (safe, and more rows): on a loaded
    machine that made the row count below depend on timing. The test steps the clock only
    once the writer has caught up, as a writer that keeps up with its interval does.
    """
    slot = next(slot for slot in engine.writer_slots if slot.writer is writer)
    deadline = asyncio.get_running_loop().time() + 120
    while slot.written + slot.skipped + slot.failed < snapshots:
        assert asyncio.get_running_loop().time() < deadline, (slot.written, slot.skipped, slot.failed)
        await asyncio.sleep(0.01)


async def test_change_snapshots_in_the_store_answer_as_full_snapshots(
    backend: RecordingBackend, tmp_path: Path
) -> None:
    clock = ManualClock()
    rng = np.random.default_rng(21)
    group = ExactGroup([ExactTaskConfig(name=name, key_fields=fields) for name, fields in TASKS.items()])
    full = RecordingWriter()
    store_writer = SeenWriter(backend, SnapshotSpool(tmp_path / "spool", 64), engine_id="e", label="changes")
    store_writer.seen = []
    store_writer.close_grace = 300.0  # a loaded machine: drain everything before the test reads
    every10 = WriterConfig(type="embedded", snapshot_interval=10)
    engine = Engine(
        {"exact": group}, {"exact": [(every10, full), (every10, store_writer)]}, period_s=50, clock=clock
    )
    await engine.start(schedule=False)
    t0 = clock.now
    for step in range(1, 9):  # a reset at 50 s; the busy batches at 10 and 60 s
        busy = step in (1, 6)
        await engine.ingest(
            random_batch(rng, 2000 if busy else 100, hosts=50 if busy else 3, ports=30 if busy else 2)
        )
        clock.now = t0 + step * 10 * S
        await engine.run_due()
        await handed_over(engine, store_writer, step)
    await engine.close()
    assert sum(len(t) for s in full.snapshots for t in s.flows) > 2 * sum(
        int(count) for (count,) in await backend.select("SELECT count() FROM flow_metrics")
    )

    store = QueryStore(backend, description="test")
    # the truth: the full snapshots of the instants the store writer was given
    full.snapshots = [snapshot for snapshot in full.snapshots if snapshot.taken_at_ns in store_writer.seen]
    assert len(full.snapshots) >= 3
    full_rows = rows_of(full)
    seconds = sorted({snapshot.taken_at_ns // S for snapshot in full.snapshots})
    for end in [*seconds, None]:
        latest = latest_at(full_rows, (end + 1) * S - 1 if end is not None else 2**63 - 1)
        per_task: dict[str, list[int]] = {}
        for (task, _key), (packets, size, _first, _last) in latest.items():
            entry = per_task.setdefault(task, [0, 0, 0])
            entry[0] += size
            entry[1] += packets
            entry[2] += 1
        expected = [TaskTotals(task, *entry) for task, entry in sorted(per_task.items())]
        assert await store.aggregate_flows(FlowFilter(end=end)) == expected, end
    # one flow seen in both periods, traced at the newest snapshot
    (task, key), (packets, size, first, last) = next(
        (flow, counters) for flow, counters in latest_at(full_rows, 2**63 - 1).items() if flow[0] == "five"
    )
    keys = dict(zip(FIELD_ORDER, key, strict=True))
    trace = await store.trace_flow("five", keys, None)
    assert trace is not None
    assert (trace.packets, trace.bytes, trace.first_seen, trace.last_seen) == (
        packets,
        size,
        first // S,
        last // S,
    )

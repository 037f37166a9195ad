"""Change snapshots: a writer that takes changes reads, under "the latest row ≤ t per flow", exactly
what a writer of full snapshots reads, while writing only the flows that changed.

The truth is the full-snapshot writer beside it (itself checked against brute force in
test_engine_schedule.py) and a brute-force count of the batches; time is a manual clock.
"""

from __future__ import annotations

import numpy as np

from netspectra.config.models import ExactTaskConfig, WriterConfig
from netspectra.engine.engine import Engine
from netspectra.engine.exact import ExactGroup
from netspectra.model.fields import FIELD_ORDER, KeyField
from netspectra.model.packets import PacketColumns
from netspectra.model.snapshot import Snapshot
from tests.unit.engine.engine_helpers import brute_force, random_batch
from tests.unit.engine.test_engine_exact_table import table_as_dict
from tests.unit.engine.test_engine_schedule import ManualClock, RecordingWriter

S = 1_000_000_000
TASKS = {"src": (KeyField.SRC_IP,), "five": FIELD_ORDER, "dport": (KeyField.DST_PORT,)}


class ChangeWriter(RecordingWriter):
    """Takes change snapshots; fails the writes whose numbers are in ``fail_at`` (1-based)."""

    writes_changes = True

    def __init__(self, fail_at: frozenset[int] = frozenset()) -> None:
        super().__init__()
        self.fail_at = fail_at
        self.calls = 0

    async def write(self, snapshot: Snapshot) -> None:
        self.calls += 1
        if self.calls in self.fail_at:
            raise OSError("disk full (test)")
        self.snapshots.append(snapshot)


class FlakyFullWriter(ChangeWriter):
    """Full snapshots, failing as a ChangeWriter does: what a failed write costs either way."""

    writes_changes = False


Rows = dict[tuple[str, tuple], list[tuple[int, list[int]]]]


def rows_of(writer: RecordingWriter) -> Rows:
    """(task, flow) → [(taken_at, counters)] of every row the writer was given."""
    rows: Rows = {}
    for snapshot in writer.snapshots:
        for table in snapshot.flows:
            for key, counters in table_as_dict(table).items():
                rows.setdefault((table.task, key), []).append((snapshot.taken_at_ns, counters))
    return rows


def latest_at(rows: Rows, t: int) -> dict[tuple[str, tuple], list[int]]:
    """Go's read rule: per flow, the row with the largest snapshot time ≤ t."""
    answer = {}
    for flow, written in rows.items():
        before = [(at, counters) for at, counters in written if at <= t]
        if before:
            answer[flow] = max(before, key=lambda item: item[0])[1]
    return answer


def quiet_batch(rng: np.random.Generator, count: int) -> PacketColumns:
    """Packets of two hosts and two ports only: a few flows change, the rest stay as they were."""
    return random_batch(rng, count, hosts=2, ports=2)


async def test_change_snapshots_read_as_full_snapshots_and_write_only_changes() -> None:
    clock = ManualClock()
    t0 = clock.now
    rng = np.random.default_rng(12)
    group = ExactGroup([ExactTaskConfig(name=name, key_fields=fields) for name, fields in TASKS.items()])
    full10, full25 = RecordingWriter(), RecordingWriter()
    # flaky writers fail two snapshots in a row, and the period's closing one (lost either way)
    changes10, changes25, flaky10 = ChangeWriter(), ChangeWriter(), ChangeWriter(frozenset({2, 3, 6}))
    flaky_full10 = FlakyFullWriter(frozenset({2, 3, 6}))
    every10, every25 = (
        WriterConfig(type="file", snapshot_interval=10),
        WriterConfig(type="file", snapshot_interval=25),
    )
    engine = Engine(
        {"exact": group},
        {
            "exact": [
                (every10, full10),
                (every25, full25),
                (every10, changes10),
                (every25, changes25),
                (every10, flaky10),
                (every10, flaky_full10),
            ]
        },
        period_s=60,
        clock=clock,
        kernel_threads=2,
    )
    await engine.start(schedule=False)
    period: list[PacketColumns] = []
    for step in range(1, 12):  # 10 s steps: a period reset at 60 s, then on to 110 s
        batch = random_batch(rng, 3000, hosts=60, ports=40) if step in (1, 7) else quiet_batch(rng, 200)
        await engine.ingest(batch)
        period.append(batch)
        clock.now = t0 + step * 10 * S
        await engine.run_due()
        if step == 3:
            quiet = batch
        if step == 6:
            period = []
    final = await engine.close()

    # the quiet third interval wrote only the flows it touched (the full writer: every flow)
    third = next(s for s in changes10.snapshots if s.taken_at_ns == t0 + 30 * S)
    third_full = next(s for s in full10.snapshots if s.taken_at_ns == t0 + 30 * S)
    assert {table.task: len(table) for table in third.flows} == {
        name: len(brute_force([quiet], fields)) for name, fields in TASKS.items()
    }
    assert len(third.flows[1]) * 10 < len(third_full.flows[1])

    assert {task: table_as_dict(table) for task, table in ((t.task, t) for t in final["exact"].flows)} == {
        name: brute_force(period, fields) for name, fields in TASKS.items()
    }
    checks = 0
    for full, changes in ((full10, changes10), (full25, changes25), (flaky_full10, flaky10)):
        full_rows, change_rows = rows_of(full), rows_of(changes)
        assert sum(map(len, change_rows.values())) < sum(map(len, full_rows.values())) / 2
        for snapshot in changes.snapshots:  # every instant the writer holds a snapshot
            t = snapshot.taken_at_ns
            assert latest_at(change_rows, t) == latest_at(full_rows, t), (t - t0) // S
            checks += 1
    assert flaky10.calls == len(flaky10.snapshots) + 3
    assert checks == len(changes10.snapshots) + len(changes25.snapshots) + len(flaky10.snapshots)


async def test_a_writer_that_lost_a_snapshot_gets_every_flow_next() -> None:
    clock = ManualClock()
    rng = np.random.default_rng(3)
    group = ExactGroup([ExactTaskConfig(name="src", key_fields=(KeyField.SRC_IP,))])
    writer = ChangeWriter()
    engine = Engine(
        {"exact": group}, {"exact": [(WriterConfig(type="file", snapshot_interval=10), writer)]}, clock=clock
    )
    await engine.start(schedule=False)
    first = random_batch(rng, 2000, hosts=40)
    await engine.ingest(first)
    clock.now += 10 * S
    await engine.run_due()
    await engine.ingest(quiet_batch(rng, 50))
    clock.now += 10 * S
    await engine.run_due()
    writer.needs_full_snapshot = True  # what a store writer sets when its queue dropped a snapshot
    clock.now += 10 * S
    await engine.run_due()
    everything = table_as_dict(group.snapshot(0, 0).flows[0])
    await engine.close()
    assert len(writer.snapshots[1].flows[0]) <= 2 < len(writer.snapshots[0].flows[0])
    assert writer.snapshots[2].since_epoch == 0
    assert table_as_dict(writer.snapshots[2].flows[0]) == everything

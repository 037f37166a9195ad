"""Engine timing with an injected clock: per-writer intervals, one global period, final snapshot."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from netspectra.app import build_engine
from netspectra.config.models import ExactTaskConfig, Settings, WriterConfig
from netspectra.engine.engine import Engine
from netspectra.engine.exact import ExactGroup
from netspectra.engine.groups import build_groups
from netspectra.errors import ConfigError
from netspectra.model.fields import KeyField
from netspectra.model.packets import PacketColumns
from netspectra.model.snapshot import Snapshot
from netspectra.storage.context import StorageContext
from tests.unit.engine.engine_helpers import brute_force, random_batch
from tests.unit.engine.test_engine_exact_table import table_as_dict

S = 1_000_000_000
FIELDS = (KeyField.SRC_IP, KeyField.DST_PORT)


class RecordingWriter:
    """A real (in-memory) SnapshotWriter: keeps what it is given."""

    def __init__(self, fail: bool = False) -> None:
        self.snapshots: list[Snapshot] = []
        self.closed = False
        self.fail = fail

    async def write(self, snapshot: Snapshot) -> None:
        if self.fail:
            raise OSError("disk full (test)")
        self.snapshots.append(snapshot)

    async def close(self) -> None:
        self.closed = True


class ManualClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000 * S

    def __call__(self) -> int:
        return self.now


def flows(snapshot: Snapshot) -> dict[tuple, list[int]]:
    return table_as_dict(snapshot.flows[0])


async def test_two_intervals_one_period_and_final_snapshot() -> None:
    clock = ManualClock()
    t0 = clock.now
    rng = np.random.default_rng(7)
    b1, b2, b3, b4 = (random_batch(rng, 4000, hosts=60, ports=50) for _ in range(4))
    fast, slow = RecordingWriter(), RecordingWriter()
    group = ExactGroup([ExactTaskConfig(name="src_dport", key_fields=FIELDS)])
    engine = Engine(
        {"exact": group},
        {
            "exact": [
                (WriterConfig(type="file", snapshot_interval=10), fast),
                (WriterConfig(type="file", snapshot_interval=25), slow),
            ]
        },
        period_s=60,
        clock=clock,
    )
    await engine.start(schedule=False)
    await engine.ingest(b1)
    clock.now = t0 + 10 * S
    await engine.run_due()  # fast: b1
    await engine.ingest(b2)
    clock.now = t0 + 25 * S
    await engine.run_due()  # fast and slow: b1+b2 (slow's snapshot did not steal from fast)
    await engine.ingest(b3)
    clock.now = t0 + 60 * S
    await engine.run_due()  # period ends: both get the closing snapshot b1..b3, then reset
    await engine.ingest(b4)
    clock.now = t0 + 65 * S
    await engine.run_due()  # nothing due
    final = await engine.close()  # both get b4 only: a fresh period

    truth = {
        "b1": brute_force([b1], FIELDS),
        "b12": brute_force([b1, b2], FIELDS),
        "b123": brute_force([b1, b2, b3], FIELDS),
        "b4": brute_force([b4], FIELDS),
    }
    assert [flows(s) for s in fast.snapshots] == [truth["b1"], truth["b12"], truth["b123"], truth["b4"]]
    assert [flows(s) for s in slow.snapshots] == [truth["b12"], truth["b123"], truth["b4"]]
    assert [s.taken_at_ns - t0 for s in fast.snapshots] == [10 * S, 25 * S, 60 * S, 65 * S]
    assert [s.period_start_ns - t0 for s in fast.snapshots] == [0, 0, 0, 60 * S]
    assert fast.closed and slow.closed
    assert flows(final["exact"]) == truth["b4"]
    assert engine.stats.packets == 16000 and engine.stats.batches == 4
    assert engine.stats.bytes == sum(int(b.length.sum()) for b in (b1, b2, b3, b4))


async def test_failing_writer_is_logged_and_others_continue(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    good, bad = RecordingWriter(), RecordingWriter(fail=True)
    batch = random_batch(np.random.default_rng(8), 1000)
    engine = Engine(
        {"exact": ExactGroup([ExactTaskConfig(name="t", key_fields=FIELDS)])},
        {"exact": [(WriterConfig(type="file"), bad), (WriterConfig(type="file"), good)]},
        clock=clock,
    )
    await engine.start(schedule=False)
    await engine.ingest(batch)
    await engine.ingest(PacketColumns.empty(0))
    with caplog.at_level(logging.ERROR):
        await engine.close()
    assert [flows(s) for s in good.snapshots] == [brute_force([batch], FIELDS)]
    assert bad.closed and good.closed
    failure = [r for r in caplog.records if "failed to write" in r.getMessage()]
    assert len(failure) == 1 and failure[0].exc_info is not None
    assert "disk full (test)" in caplog.text


async def test_scheduler_runs_on_real_time() -> None:
    writer = RecordingWriter()
    batch = random_batch(np.random.default_rng(9), 500)
    engine = Engine(
        {"exact": ExactGroup([ExactTaskConfig(name="t", key_fields=FIELDS)])},
        {"exact": [(WriterConfig(type="file", snapshot_interval=0.05), writer)]},
    )
    async with engine:
        await engine.ingest(batch)
        deadline = asyncio.get_running_loop().time() + 30  # bounds a failure; the test waits on snapshots
        while len(writer.snapshots) < 3:
            assert asyncio.get_running_loop().time() < deadline, "the scheduler wrote fewer than 3 snapshots"
            await asyncio.sleep(0.01)
    assert len(writer.snapshots) >= 3
    assert flows(writer.snapshots[-1]) == brute_force([batch], FIELDS)


def test_unknown_aggregator_type_names_the_choices() -> None:
    settings = Settings.model_validate({"aggregator": {"types": ["exakt"]}})
    with pytest.raises(ConfigError) as caught:
        build_groups(settings)
    message = str(caught.value)
    assert "did you mean 'exact'" in message and "available:" in message and "sketch" in message


def test_build_engine_builds_enabled_writers_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings.model_validate(
        {
            "aggregator": {
                "types": ["exact"],
                "exact": {
                    "writers": [
                        {"type": "gob", "gob": {"root_path": str(tmp_path)}},
                        {"type": "file", "enabled": False},
                    ],
                    "tasks": [{"name": "per_src_ip", "key_fields": ["SrcIP"], "num_shards": 64}],
                },
            }
        }
    )
    engine = build_engine(settings, StorageContext())
    assert list(engine.groups) == ["exact"]
    assert engine.groups["exact"].task_names == ("per_src_ip",)
    assert len(engine._slots) == 1


class BrokenGroup:
    """A group whose snapshot always fails (a buggy plugin)."""

    name = "broken"
    task_names = ("b",)

    def insert(self, batch: PacketColumns) -> None:
        pass

    def snapshot(self, taken_at_ns: int, period_start_ns: int) -> Snapshot:
        raise RuntimeError("plugin bug (test)")

    def reset(self) -> None:
        pass


async def test_a_broken_group_does_not_cost_others_their_snapshot(caplog: pytest.LogCaptureFixture) -> None:
    good, starved = RecordingWriter(), RecordingWriter()
    batch = random_batch(np.random.default_rng(10), 700)
    engine = Engine(
        {"broken": BrokenGroup(), "exact": ExactGroup([ExactTaskConfig(name="t", key_fields=FIELDS)])},
        {"broken": [(WriterConfig(type="text"), starved)], "exact": [(WriterConfig(type="file"), good)]},
        clock=ManualClock(),
    )
    await engine.start(schedule=False)
    await engine.ingest(batch)
    with caplog.at_level(logging.ERROR):
        final = await engine.close()
    assert list(final) == ["exact"] and starved.snapshots == [] and starved.closed
    assert [flows(s) for s in good.snapshots] == [brute_force([batch], FIELDS)]
    assert "plugin bug (test)" in caplog.text

"""The engine role's lifecycle over the in-process bus: a crash restarts, a stop always snapshots."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from netspectra.bus.embedded import EmbeddedBus
from netspectra.config.models import ExactTaskConfig, Settings, WriterConfig
from netspectra.engine.engine import Engine
from netspectra.engine.exact import ExactGroup
from netspectra.engine.role import EngineRole
from netspectra.model.fields import KeyField
from netspectra.model.packets import PacketColumns
from netspectra.model.snapshot import Snapshot
from netspectra.wire.codec import encode_packet_batch
from netspectra.wire.subjects import batch_subject
from tests.unit.engine.engine_helpers import brute_force, random_batch
from tests.unit.engine.test_engine_exact_table import table_as_dict
from tests.unit.engine.test_engine_schedule import RecordingWriter

FIELDS = (KeyField.SRC_IP, KeyField.DST_PORT)


class FailingGroup:
    """A real ExactGroup whose next ``failures`` inserts raise (a counting job that fails)."""

    def __init__(self, failures: int) -> None:
        self.inner = ExactGroup([ExactTaskConfig(name="t", key_fields=FIELDS)])
        self.failures = failures

    def __getattr__(self, name: str) -> object:
        if name == "insert_jobs":  # one job per batch, so the engine calls insert() below
            raise AttributeError(name)
        return getattr(self.inner, name)

    def insert(self, batch: PacketColumns) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ValueError("counting job failed (test)")
        self.inner.insert(batch)


def settings() -> Settings:
    return Settings.model_validate({"engine": {"flush_interval": 0.02, "stats_interval": 60}})


async def until(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def flows(snapshot: Snapshot) -> dict[tuple, list[int]]:
    return table_as_dict(snapshot.flows[0])


async def test_a_crashed_role_restarts_and_keeps_counting_and_scheduling() -> None:
    rng = np.random.default_rng(21)
    lost, kept = random_batch(rng, 500), random_batch(rng, 700)
    writer = RecordingWriter()
    engine = Engine(
        {"exact": FailingGroup(failures=1)},
        {"exact": [(WriterConfig(type="file", snapshot_interval=0.05), writer)]},
        kernel_threads=1,
    )
    bus = EmbeddedBus()
    role = EngineRole(settings(), bus, engine)
    stop = asyncio.Event()
    first = asyncio.create_task(role.serve(stop))
    await until(lambda: bus._route(batch_subject(role.subject))[1])
    await bus.publish(batch_subject(role.subject), encode_packet_batch(lost))
    with pytest.raises(ValueError, match="counting job failed"):
        await first  # what the supervisor sees; it then calls serve() again on the same role

    second = asyncio.create_task(role.serve(stop))
    await until(lambda: bus._route(batch_subject(role.subject))[1])
    await bus.publish(batch_subject(role.subject), encode_packet_batch(kept))
    await until(lambda: engine.stats.packets == len(kept))
    await until(lambda: any(flows(s) == brute_force([kept], FIELDS) for s in writer.snapshots))
    stop.set()
    await second
    assert flows(engine.final_snapshots["exact"]) == brute_force([kept], FIELDS)
    assert flows(writer.snapshots[-1]) == brute_force([kept], FIELDS) and writer.closed


class DrainFailsBus(EmbeddedBus):
    """The in-process bus, except that draining a payload subscription fails after delivering."""

    async def subscribe_payloads(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        subscription = await super().subscribe_payloads(*args, **kwargs)
        drain = subscription.drain

        async def failing_drain() -> None:
            await drain()
            raise OSError("drain failed (test)")

        subscription.drain = failing_drain  # type: ignore[method-assign]
        return subscription


async def test_stop_writes_the_final_snapshot_even_when_shutdown_fails() -> None:
    batch = random_batch(np.random.default_rng(22), 600)
    writer = RecordingWriter()
    engine = Engine(
        {"exact": ExactGroup([ExactTaskConfig(name="t", key_fields=FIELDS)])},
        {"exact": [(WriterConfig(type="file", snapshot_interval=3600), writer)]},
        kernel_threads=1,
    )
    bus = DrainFailsBus()
    role = EngineRole(settings(), bus, engine)
    stop = asyncio.Event()
    task = asyncio.create_task(role.serve(stop))
    await until(lambda: bus._route(batch_subject(role.subject))[1])
    await bus.publish(batch_subject(role.subject), encode_packet_batch(batch))
    await until(lambda: engine.stats.packets == len(batch))
    stop.set()
    with pytest.raises(OSError, match="drain failed"):
        await task
    assert [flows(s) for s in writer.snapshots] == [brute_force([batch], FIELDS)]
    assert writer.closed

"""Probe (file replay) → real nats-server → engine: exact counts equal the generator's truth."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import numpy as np
import pytest

from netspectra.app import build_engine
from netspectra.bus.nats import NatsBus
from netspectra.engine.role import EngineRole
from netspectra.model.fields import KeyField
from netspectra.probe.role import ProbeRole
from netspectra.storage.context import StorageContext
from netspectra.synth.traffic import TrafficSpec, exact_truth, write_trace
from tests.fixtures.nats import NatsServer
from tests.integration.pipeline_helpers import (
    TASKS,
    pipeline_settings,
    start_engine_role,
    table_flows,
    wait_for,
)


def truth_flows(truth, task: str) -> dict:  # type: ignore[no-untyped-def]
    fields = [KeyField(name) for name in TASKS[task]]
    return {
        key: (flow.packets, flow.bytes, flow.first_ns, flow.last_ns)
        for key, flow in exact_truth(truth, fields).items()
    }


async def run_pipeline(settings, *, expect_packets: int) -> tuple[EngineRole, ProbeRole]:  # type: ignore[no-untyped-def]
    engine_bus = NatsBus(settings.bus_url)
    probe_bus = NatsBus(settings.probe.nats_url)
    engine = build_engine(settings, StorageContext())
    engine_role = EngineRole(settings, engine_bus, engine)
    probe_role = ProbeRole(settings, probe_bus)
    engine_stop, probe_stop = asyncio.Event(), asyncio.Event()
    engine_task = await start_engine_role(engine_role, engine_stop)
    await probe_role.serve(probe_stop)  # returns at the end of the file
    await wait_for(lambda: engine_role.stats.packets + engine_role.stats.rejected >= expect_packets)
    engine_stop.set()
    await engine_task
    await probe_bus.close()
    await engine_bus.close()
    return engine_role, probe_role


@pytest.mark.parametrize("batch", [0, 1000], ids=["per-message", "batched"])
async def test_replay_through_nats_counts_equal_truth(
    nats_server: NatsServer, tmp_path: Path, batch: int
) -> None:
    trace = tmp_path / "trace.pcap"
    truth = write_trace(trace, TrafficSpec(packets=20_000, flows=300, seed=11))
    settings = pipeline_settings(url=nats_server.url, pcap=trace, batch=batch, rate=200_000)
    engine_role, probe_role = await run_pipeline(settings, expect_packets=len(truth.packets))
    assert probe_role.publisher.packets == len(truth.packets)
    assert engine_role.stats.packets == len(truth.packets)
    assert engine_role.stats.rejected == 0
    assert engine_role.stats.gap == 0
    snapshot = engine_role.engine.final_snapshots["exact"]
    tables = {table.task: table for table in snapshot.flows}
    for task in TASKS:
        assert table_flows(tables[task]) == truth_flows(truth, task), task


async def test_official_protobuf_publisher_is_counted(
    nats_server: NatsServer, official_protos, tmp_path: Path
) -> None:
    """A publisher sharing nothing with our codec (as a Go probe would send), 4- and 16-byte addresses."""
    settings = pipeline_settings(url=nats_server.url)
    engine = build_engine(settings, StorageContext())
    bus = NatsBus(nats_server.url)
    role = EngineRole(settings, bus, engine)
    stop = asyncio.Event()
    task = await start_engine_role(role, stop)
    pb = official_protos.traffic_pb2
    rng = np.random.default_rng(5)
    expected: dict[tuple[object, ...], list[int]] = {}
    publisher = NatsBus(nats_server.url)
    await publisher.connect()
    for i in range(3000):
        v6 = i % 3 == 0
        src = bytes(rng.integers(0, 256, 16 if v6 else 4, dtype=np.uint8))
        dst = bytes([10, 0, 0, i % 7]) if not v6 else bytes(15) + bytes([i % 7])
        message = pb.PacketInfo(length=60 + i % 900)
        message.timestamp.seconds = 1_700_000_000 + i
        message.timestamp.nanos = i * 1000
        message.five_tuple.src_ip = src
        message.five_tuple.dst_ip = dst
        message.five_tuple.src_port = 1000 + i % 50
        message.five_tuple.dst_port = 443 if i % 2 else 53
        message.five_tuple.protocol = 6 if i % 2 else 17
        await publisher.publish(settings.bus_subject, message.SerializeToString())
        key = (
            str(ipaddress.ip_address(src)),
            str(ipaddress.ip_address(dst)),
            1000 + i % 50,
            443 if i % 2 else 53,
            6 if i % 2 else 17,
        )
        entry = expected.setdefault(key, [0, 0, 2**63, 0])
        ns = (1_700_000_000 + i) * 10**9 + i * 1000
        entry[0] += 1
        entry[1] += 60 + i % 900
        entry[2] = min(entry[2], ns)
        entry[3] = max(entry[3], ns)
    await publisher.publish(settings.bus_subject, b"\x0a\x05\x08")  # truncated: counted, skipped
    await publisher.flush()
    await wait_for(lambda: role.stats.packets + role.stats.rejected == 3001)
    stop.set()
    await task
    await publisher.close()
    await bus.close()
    assert role.stats.rejects["truncated"] == 1
    tables = {table.task: table for table in engine.final_snapshots["exact"].flows}
    assert table_flows(tables["per_five_tuple"]) == {k: tuple(v) for k, v in expected.items()}

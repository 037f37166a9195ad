"""Values that cannot be true, published to a real nats-server, are counted as rejected; the rest stays exact.

Packets are encoded by the official protobuf package (as a Go probe sends them); count messages
are hand-written JSON, as a forger would send them. The truth is what the test published.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from pathlib import Path
from typing import Any

import pytest

from netspectra.app import build_engine
from netspectra.bus.nats import NatsBus
from netspectra.engine.role import EngineRole
from netspectra.model.fields import KeyField
from netspectra.model.packets import PacketColumns
from netspectra.probe.role import ProbeRole
from netspectra.storage.context import StorageContext
from netspectra.synth.traffic import TrafficSpec, exact_truth, write_trace
from netspectra.wire.codec import MAX_PACKET_LENGTH, MAX_TIMESTAMP_SECONDS
from netspectra.wire.subjects import batch_subject, count_subject
from tests.fixtures.nats import NatsServer
from tests.integration.pipeline_helpers import pipeline_settings, start_engine_role, table_flows, wait_for

#: (timestamp seconds, nanos, length) → the reason each is rejected for
BAD_VALUES = [
    ((253_402_300_800, 0, 60), "bad_timestamp"),  # year 10000: read as 1816 before
    ((2**62, 0, 60), "bad_timestamp"),  # read as 1970 before
    ((MAX_TIMESTAMP_SECONDS + 1, 0, 60), "bad_timestamp"),
    ((-1, 0, 60), "bad_timestamp"),
    ((1_700_000_000, -1, 60), "bad_timestamp"),
    ((1_700_000_000, 10**9, 60), "bad_timestamp"),
    ((1_700_000_000, 0, 2**64 - 1), "bad_length"),  # wrapped the byte counters before
    ((1_700_000_000, 0, MAX_PACKET_LENGTH + 1), "bad_length"),
]
#: Forged count messages of probe "forger" (its genuine counts are sent too) → reason
FORGED_COUNTS = [
    (b'{"probe": "forger", "packets": 1e308, "messages": 1}', "malformed"),
    (b'{"probe": "forger", "packets": Infinity, "messages": 1}', "malformed"),
    (b'{"probe": "forger", "packets": NaN, "messages": 1}', "malformed"),
    (b'{"probe": "forger", "packets": "100", "messages": 1}', "malformed"),
    (b'{"probe": "forger", "packets": 1' + b"0" * 308 + b', "messages": 1}', "out_of_range"),
    (b'{"probe": "forger", "packets": -1, "messages": 0}', "out_of_range"),
    (b'{"probe": "forger", "packets": 3, "messages": 3}', "decreasing"),  # sent after a higher count
]
GOOD_PER_ROUND = 40


def good_packet(pb: Any, i: int) -> tuple[Any, tuple[object, ...], int, int]:
    """An official PacketInfo, its five-tuple key (truth's form), its length and its time in ns."""
    v6 = i % 3 == 0
    src = bytes(range(i % 5, i % 5 + 16)) if v6 else bytes([10, 1, i % 5, 1])
    dst = bytes(15) + bytes([i % 7 + 1]) if v6 else bytes([10, 2, 0, i % 7])
    message = pb.PacketInfo(length=60 + i % 9000)
    message.timestamp.seconds, message.timestamp.nanos = 1_700_000_000 + i, i * 1000
    message.five_tuple.src_ip, message.five_tuple.dst_ip = src, dst
    message.five_tuple.src_port, message.five_tuple.dst_port, message.five_tuple.protocol = (
        1000 + i % 50,
        443,
        6,
    )
    key = (str(ipaddress.ip_address(src)), str(ipaddress.ip_address(dst)), 1000 + i % 50, 443, 6)
    return message, key, 60 + i % 9000, (1_700_000_000 + i) * 10**9 + i * 1000


def bad_packet(pb: Any, seconds: int, nanos: int, length: int) -> Any:
    message, _, _, _ = good_packet(pb, 1)
    message.timestamp.seconds, message.timestamp.nanos, message.length = seconds, nanos, length
    return message


def count_message(packets: int, messages: int) -> bytes:
    return f'{{"probe": "forger", "packets": {packets}, "messages": {messages}}}'.encode()


async def test_out_of_range_values_and_forged_counts_are_rejected_by_reason(
    nats_server: NatsServer, official_protos: Any
) -> None:
    pb = official_protos.traffic_pb2
    settings = pipeline_settings(url=nats_server.url)
    engine = build_engine(settings, StorageContext())
    engine_bus = NatsBus(nats_server.url)
    role = EngineRole(settings, engine_bus, engine)
    stop = asyncio.Event()
    task = await start_engine_role(role, stop)
    publisher = NatsBus(nats_server.url)  # one connection: NATS keeps its messages in order
    await publisher.connect()
    expected: dict[tuple[object, ...], list[int]] = {}
    reasons = dict.fromkeys(["bad_timestamp", "bad_length"], 0)
    messages = packets_sent = 0
    i = 0

    def good(i: int) -> bytes:
        message, key, length, ns = good_packet(pb, i)
        entry = expected.setdefault(key, [0, 0, 2**63, 0])
        entry[0] += 1
        entry[1] += length
        entry[2], entry[3] = min(entry[2], ns), max(entry[3], ns)
        return message.SerializeToString()

    try:
        await publisher.publish(count_subject(settings.bus_subject), count_message(0, 0))
        for (seconds, nanos, length), reason in BAD_VALUES:
            for _ in range(GOOD_PER_ROUND):
                await publisher.publish(settings.bus_subject, good(i))
                i += 1
            await publisher.publish(
                settings.bus_subject, bad_packet(pb, seconds, nanos, length).SerializeToString()
            )
            # the same value inside a PacketBatch, between two good entries
            batch = pb.PacketBatch()
            batch.packets.append(pb.PacketInfo.FromString(good(i)))
            batch.packets.append(bad_packet(pb, seconds, nanos, length))
            batch.packets.append(pb.PacketInfo.FromString(good(i + 1)))
            i += 2
            await publisher.publish(batch_subject(settings.bus_subject), batch.SerializeToString())
            reasons[reason] += 2
            packets_sent += GOOD_PER_ROUND + 1 + 3
            messages += GOOD_PER_ROUND + 2
            await publisher.publish(
                count_subject(settings.bus_subject), count_message(packets_sent, messages)
            )
        for forged, _ in FORGED_COUNTS:
            await publisher.publish(count_subject(settings.bus_subject), forged)
        await publisher.flush()
        total_good = sum(entry[0] for entry in expected.values())
        await wait_for(
            lambda: (
                role.stats.packets + role.stats.rejected == packets_sent
                and role.stats.bad_count_messages == len(FORGED_COUNTS)
            )
        )
        await wait_for(lambda: role.stats.published == packets_sent)  # applied at the next flush
    finally:
        stop.set()
        await task
        await publisher.close()
        await engine_bus.close()
    stats = role.stats
    assert stats.packets == total_good
    assert {reason: count for reason, count in stats.rejects.items() if count} == reasons
    expected_refusals = {"malformed": 0, "out_of_range": 0, "decreasing": 0}
    for _, reason in FORGED_COUNTS:
        expected_refusals[reason] += 1
    assert stats.counts.rejects == expected_refusals
    assert stats.published_by_probe == {"forger": packets_sent}
    assert stats.gap == 0
    tables = {table.task: table for table in engine.final_snapshots["exact"].flows}
    assert table_flows(tables["per_five_tuple"]) == {key: tuple(entry) for key, entry in expected.items()}


HOLD_AT = 6_000  # packets the probe publishes before the engine subscribes


async def test_a_probe_started_before_the_engine_gets_no_negative_or_false_gap(
    nats_server: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Real probe → nats-server → engine, the engine subscribing mid-stream.

    The replay is held at HOLD_AT packets (flushed, so the server has dropped them for want of
    a subscriber) until the engine holds its subscriptions. What the engine is owed is what the
    probe published after that; what it missed is reported apart from the gap.
    """
    caplog.set_level(logging.INFO)
    trace = tmp_path / "trace.pcap"
    truth = write_trace(trace, TrafficSpec(packets=30_000, flows=200, seed=41))
    n = len(truth.packets)
    settings = pipeline_settings(url=nats_server.url, pcap=trace, rate=30_000)
    engine_bus, probe_bus = NatsBus(settings.bus_url), NatsBus(settings.probe.nats_url)
    engine = build_engine(settings, StorageContext())
    engine_role = EngineRole(settings, engine_bus, engine)
    probe_role = ProbeRole(settings, probe_bus)
    held, release = asyncio.Event(), asyncio.Event()
    publish = probe_role.publisher.publish
    held_at: list[int] = []

    async def held_publish(columns: PacketColumns) -> None:
        if probe_role.publisher.packets >= HOLD_AT and not release.is_set():
            await probe_bus.flush()  # the server has seen (and dropped) everything so far
            held_at.append(probe_role.publisher.packets)
            held.set()
            await release.wait()
        await publish(columns)

    probe_role.publisher.publish = held_publish  # type: ignore[method-assign]
    gaps: list[int | None] = []
    flush = engine_role._flush

    async def recorded_flush() -> None:
        await flush()
        gaps.append(engine_role.stats.gap)

    engine_role._flush = recorded_flush  # type: ignore[method-assign]
    probe_task = asyncio.create_task(probe_role.serve(asyncio.Event()))
    engine_stop = asyncio.Event()
    engine_task: asyncio.Task[None] | None = None
    try:
        await asyncio.wait_for(held.wait(), 60)
        engine_task = await start_engine_role(engine_role, engine_stop)
        release.set()
        await asyncio.wait_for(probe_task, 60)
        await wait_for(lambda: engine_role.stats.published == probe_role.publisher.packets, 60)
    finally:
        release.set()
        engine_stop.set()
        if engine_task is not None:
            await engine_task
        await probe_task
        await probe_bus.close()
        await engine_bus.close()
    stats, publisher = engine_role.stats, probe_role.publisher
    assert publisher.packets == n and publisher.failed_packets == 0
    missed = held_at[0]
    lost = engine_bus.stats.dropped + stats.dropped  # slow-consumer drops, if the machine is slow
    flows = table_flows({t.task: t for t in engine.final_snapshots["exact"].flows}["per_five_tuple"])
    delivered = sum(packets for packets, _, _, _ in flows.values())
    assert delivered == stats.packets == n - missed - lost
    assert stats.rejected == 0
    assert stats.gap == lost
    assert all(gap is None or 0 <= gap <= lost for gap in gaps), gaps
    assert stats.counts.before_first_count == missed
    expected = exact_truth(truth, [KeyField(f) for f in ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol")])
    for key, (packets, byte_count, _, _) in flows.items():  # nothing invented, nothing repeated
        assert packets <= expected[key].packets and byte_count <= expected[key].bytes, key
    final = [r.getMessage() for r in caplog.records if "Engine role stopped" in r.getMessage()]
    assert final and final[-1].endswith(
        f"gap {lost} (+{missed} published before this engine heard from their probe)"
    ), final

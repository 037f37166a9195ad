"""Raw and renormalised counts per stored flow: scapy's NetFlow v5 exports → UDP → engine → store → gRPC.

The independent encoder (scapy) builds exports of the generator's five-tuple flows, as in
test_flow_scapy. Each flow is cut into two records sent in datagrams of different sampling
intervals (1-in-100 and 1-in-7: mixed rates within one flow), or all at 1-in-100. Collected over a
real UDP socket, counted by the engine, written by a real store writer (embedded chdb, or a real
clickhouse-server), answered over gRPC: per flow the raw packets and bytes equal the generator's
truth exactly and the renormalised ones the sum of each record's share times its rate.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from grpclib.client import Channel
from scapy.layers.netflow import NetflowHeader, NetflowHeaderV5, NetflowRecordV5

from netspectra.api.role import ApiRole
from netspectra.app import build_engine
from netspectra.bus.embedded import EmbeddedBus
from netspectra.config.models import Settings
from netspectra.engine.role import EngineRole
from netspectra.model.fields import FIELD_ORDER
from netspectra.probe.role import ProbeRole
from netspectra.storage.context import StorageContext
from netspectra.storage.embedded import EmbeddedBackend
from netspectra.synth.traffic import exact_truth
from netspectra.wire.generated import v1
from tests.integration.api_serving import store_writer
from tests.integration.pipeline_helpers import TASKS, start_engine_role, table_flows, wait_for
from tests.integration.test_flow_scapy import _MS, _free_udp_port, v4_truth

Key = tuple[Any, ...]
#: per five-tuple: (raw packets, raw bytes, renormalised packets, renormalised bytes)
Counts = tuple[int, int, int, int]


def export_records(
    truth: Any, rates: tuple[int, int]
) -> tuple[dict[int, list[tuple[Key, int, int, int, int]]], dict[Key, Counts]]:
    """Records per sampling interval (key, packets, bytes, first ns, last ns) and the per-flow
    truth: the first half of a flow's packets (and their share of its bytes) at ``rates[0]``, the
    rest at ``rates[1]``; a one-packet flow is one record."""
    per_rate: dict[int, list[tuple[Key, int, int, int, int]]] = {rate: [] for rate in rates}
    counts: dict[Key, Counts] = {}
    for key, flow in exact_truth(truth, FIELD_ORDER).items():
        first_packets = (flow.packets + 1) // 2
        first_bytes = flow.bytes * first_packets // flow.packets
        parts = [
            (rates[0], first_packets, first_bytes),
            (rates[1], flow.packets - first_packets, flow.bytes - first_bytes),
        ]
        scaled_packets = scaled_bytes = 0
        for rate, packets, size in parts:
            if packets:
                per_rate[rate].append((key, packets, size, flow.first_ns, flow.last_ns))
                scaled_packets += packets * rate
                scaled_bytes += size * rate
        counts[key] = (flow.packets, flow.bytes, scaled_packets, scaled_bytes)
    return per_rate, counts


def datagrams(per_rate: dict[int, list[tuple[Key, int, int, int, int]]]) -> list[bytes]:
    """v5 datagrams by scapy, 30 records each, the header's sampling interval per datagram."""
    last_ns = max(record[4] for records in per_rate.values() for record in records)
    export_ms = last_ns // _MS + 1000
    uptime = 10**9
    out: list[bytes] = []
    sequence = 0
    for rate, records in per_rate.items():
        for start in range(0, len(records), 30):
            chunk = records[start : start + 30]
            packet = NetflowHeader(version=5) / NetflowHeaderV5(
                count=len(chunk), sysUptime=uptime, unixSecs=export_ms // 1000,
                unixNanoSeconds=(export_ms % 1000) * _MS, flowSequence=sequence, samplingInterval=rate,
            )  # fmt: skip
            for (src, dst, sport, dport, proto), packets, size, first, last in chunk:
                packet = packet / NetflowRecordV5(
                    src=src, dst=dst, srcport=sport, dstport=dport, prot=proto, dpkts=packets, dOctets=size,
                    first=uptime - (export_ms - first // _MS), last=uptime - (export_ms - last // _MS),
                )  # fmt: skip
            sequence += len(chunk)
            out.append(bytes(packet))
    return out


def per_task(counts: dict[Key, Counts], fields: list[str]) -> dict[Key, Counts]:
    """The five-tuple truth summed onto a task's key fields."""
    positions = [[field.value for field in FIELD_ORDER].index(name) for name in fields]
    out: dict[Key, list[int]] = {}
    for key, values in counts.items():
        entry = out.setdefault(tuple(key[p] for p in positions), [0, 0, 0, 0])
        for i, value in enumerate(values):
            entry[i] += value
    return {key: (a, b, c, d) for key, (a, b, c, d) in out.items()}


@pytest.mark.parametrize("store", ["embedded", "clickhouse"])
@pytest.mark.parametrize("rates", [(100, 100), (100, 7)], ids=["1-in-100", "mixed-100-and-7"])
async def test_raw_and_renormalised_counts_per_stored_flow(
    tmp_path: Path, request: pytest.FixtureRequest, store: str, rates: tuple[int, int]
) -> None:
    truth = v4_truth(tmp_path)
    per_rate, counts = export_records(truth, rates)
    sent = datagrams(per_rate)
    port = _free_udp_port()
    writer = store_writer(store, tmp_path, request)
    settings = Settings.model_validate(
        {
            "probe": {"source": "netflow", "listen": f"127.0.0.1:{port}"},
            "engine": {"flush_interval": 0.02, "stats_interval": 1.0},
            "aggregator": {
                "types": ["exact"],
                "exact": {
                    "writers": [writer],
                    "tasks": [{"name": name, "key_fields": fields} for name, fields in TASKS.items()],
                },
            },
            "api": {"grpc_listen_addr": "127.0.0.1:0", "http_listen_addr": "127.0.0.1:0"},
        }
    )
    context = StorageContext(engine_id="e1")
    bus = EmbeddedBus()
    engine_role = EngineRole(settings, bus, build_engine(settings, context))
    probe_role = ProbeRole(settings, bus)
    engine_stop, probe_stop, api_stop = asyncio.Event(), asyncio.Event(), asyncio.Event()
    engine_task = await start_engine_role(engine_role, engine_stop)
    probe_task = asyncio.create_task(probe_role.serve(probe_stop))
    await wait_for(lambda: probe_role.source is not None and bool(getattr(probe_role.source, "bound", [])))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for datagram in sent:
            sender.sendto(datagram, ("127.0.0.1", port))
    records = sum(len(r) for r in per_rate.values())
    await wait_for(lambda: engine_role.stats.flow_records >= records, timeout=60)
    probe_stop.set()
    await probe_task
    engine_stop.set()
    await engine_task  # the final snapshot is in the store
    await bus.close()
    assert probe_role.source.stats()["malformed"] == 0  # type: ignore[union-attr]

    # the engine's tables: per flow, raw = truth, renormalised = each record's share x its rate
    tables = {table.task: table for table in engine_role.engine.final_snapshots["exact"].flows}
    five = tables["per_five_tuple"]
    raw_packets, raw_bytes = five.raw_or_counted()
    got = {
        key: (int(raw_packets[i]), int(raw_bytes[i]), int(five.packets[i]), int(five.bytes[i]))
        for i, key in enumerate(table_flows(five))  # its keys in the table's row order
    }
    assert got == counts
    if rates[0] != rates[1]:
        assert any(c[2] != c[0] * rates[0] for c in counts.values())  # some flows mix the two rates

    # the store: every stored five-tuple flow's latest row
    stored = await _stored_rows(writer, request, tmp_path, context)
    assert stored == counts

    # gRPC: AggregateFlows per task and TraceFlow of flows of every task
    role = ApiRole(settings, context)
    serving = asyncio.create_task(role.serve(api_stop))
    await asyncio.wait_for(role.ready.wait(), 30)
    channel = Channel("127.0.0.1", role.grpc_port)
    try:
        stub = v1.QueryServiceStub(channel, timeout=60)
        answer = await stub.aggregate_flows(v1.AggregationRequest())
        want_totals = {}
        for task, fields in TASKS.items():
            flows = per_task(counts, fields)
            want_totals[task] = (*(sum(values[i] for values in flows.values()) for i in range(4)), len(flows))
        assert {
            s.task_name: (s.raw.packets, s.raw.bytes, s.total_packets, s.total_bytes, s.flow_count)
            for s in answer.summaries
            if s.raw is not None
        } == want_totals
        for task, fields in TASKS.items():
            flows = per_task(counts, fields)
            for key in sorted(flows, key=lambda k: -flows[k][0])[:5]:
                request_keys = {name: str(value) for name, value in zip(fields, key, strict=True)}
                life = (
                    await stub.trace_flow(v1.TraceFlowRequest(task_name=task, flow_keys=request_keys))
                ).lifecycle
                assert life is not None and life.raw is not None
                assert (life.raw.packets, life.raw.bytes, life.total_packets, life.total_bytes) == flows[
                    key
                ], (task, key)
    finally:
        channel.close()
        api_stop.set()
        await serving
        await context.close()


_STORED = (
    "SELECT SrcIP, DstIP, SrcPort, DstPort, Protocol, argMax(PacketCount - ExtrapolatedPackets, Timestamp),"
    " argMax(ByteCount - ExtrapolatedBytes, Timestamp), argMax(PacketCount, Timestamp),"
    " argMax(ByteCount, Timestamp)"
    " FROM flow_metrics WHERE TaskName = 'per_five_tuple' GROUP BY SrcIP, DstIP, SrcPort, DstPort, Protocol"
)


async def _stored_rows(
    writer: dict[str, Any], request: pytest.FixtureRequest, tmp_path: Path, context: StorageContext
) -> dict[Key, Counts]:
    """Per five-tuple flow its stored raw and renormalised counts, read with plain SQL."""
    backend: Any
    if writer["type"] == "embedded":
        backend = context.embedded_session(writer["embedded"]["path"])
        assert isinstance(backend, EmbeddedBackend)
        rows = await backend.select(_STORED)
    else:
        from netspectra.config.models import ClickHouseOptions
        from netspectra.storage.clickhouse import ClickHouseBackend

        options = {k: writer["clickhouse"][k] for k in ("host", "port", "database")}
        backend = ClickHouseBackend(ClickHouseOptions.model_validate(options))
        try:
            rows = await backend.select(_STORED)
        finally:
            await backend.close()
    return {
        (str(src), str(dst), int(sport), int(dport), int(proto)): (int(rp), int(rb), int(p), int(b))
        for src, dst, sport, dport, proto, rp, rb, p, b in rows
    }

"""An independent encoder (scapy's NetFlow v5 layers) builds exports from the generator's flows.

The generator's five-tuple flows (netspectra.synth, IPv4) become v5 records; sent over a real UDP
socket to the collector (probe), across the embedded bus, into the engine, every exact task
equals the generator's truth: packets, bytes, and first/last seen at v5's millisecond precision.
With a sampling interval of N in the header, packets and bytes are truth times N.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import numpy as np
import pytest
from scapy.layers.netflow import NetflowHeader, NetflowHeaderV5, NetflowRecordV5

from netspectra.app import build_engine
from netspectra.bus.embedded import EmbeddedBus
from netspectra.config.models import Settings
from netspectra.engine.role import EngineRole
from netspectra.model.fields import FIELD_ORDER, KeyField
from netspectra.probe.role import ProbeRole
from netspectra.storage.context import StorageContext
from netspectra.synth.traffic import GroundTruth, TrafficSpec, exact_truth, write_trace
from tests.integration.pipeline_helpers import TASKS, start_engine_role, table_flows, wait_for

_MS = 1_000_000


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def v4_truth(tmp_path: Path) -> GroundTruth:
    truth = write_trace(tmp_path / "trace.pcap", TrafficSpec(packets=6000, flows=400, seed=21))
    cols = truth.packets
    keep = np.flatnonzero(cols.ip_version == 4)
    packets = type(cols)(*(array[keep] for array in cols.arrays()))
    # v5 counts in milliseconds: the truth's times as the exporter would round them
    packets.ts_ns[:] = packets.ts_ns // _MS * _MS
    return GroundTruth(packets=packets, skipped={}, spreaders=())


def v5_datagrams(truth: GroundTruth, interval: int) -> list[bytes]:
    flows = list(exact_truth(truth, FIELD_ORDER).items())
    export_ms = max(flow.last_ns for _key, flow in flows) // _MS + 1000
    uptime = 10**9  # ms since the exporter booted; every flow lies within it
    datagrams = []
    for start in range(0, len(flows), 30):
        chunk = flows[start : start + 30]
        records = [
            NetflowRecordV5(
                src=src,
                dst=dst,
                srcport=sport,
                dstport=dport,
                prot=proto,
                dpkts=flow.packets,
                dOctets=flow.bytes,
                first=uptime - (export_ms - flow.first_ns // _MS),
                last=uptime - (export_ms - flow.last_ns // _MS),
            )
            for (src, dst, sport, dport, proto), flow in chunk
        ]
        header = NetflowHeader(version=5) / NetflowHeaderV5(
            count=len(records), sysUptime=uptime, unixSecs=export_ms // 1000,
            unixNanoSeconds=(export_ms % 1000) * _MS, flowSequence=start, samplingInterval=interval,
        )  # fmt: skip
        packet = header
        for record in records:
            packet = packet / record
        datagrams.append(bytes(packet))
    return datagrams


@pytest.mark.parametrize("interval", [0, 100], ids=["unsampled", "1-in-100"])
async def test_scapy_exports_through_udp_equal_the_generator_truth(tmp_path: Path, interval: int) -> None:
    truth = v4_truth(tmp_path)
    datagrams = v5_datagrams(truth, interval)
    port = _free_udp_port()
    settings = Settings.model_validate(
        {
            "probe": {"source": "netflow", "listen": f"127.0.0.1:{port}"},
            "engine": {"flush_interval": 0.02, "stats_interval": 1.0},
            "aggregator": {
                "types": ["exact"],
                "exact": {"tasks": [{"name": name, "key_fields": fields} for name, fields in TASKS.items()]},
            },
        }
    )
    bus = EmbeddedBus()
    engine_role = EngineRole(settings, bus, build_engine(settings, StorageContext()))
    probe_role = ProbeRole(settings, bus)
    engine_stop, probe_stop = asyncio.Event(), asyncio.Event()
    engine_task = await start_engine_role(engine_role, engine_stop)
    probe_task = asyncio.create_task(probe_role.serve(probe_stop))
    await wait_for(lambda: probe_role.source is not None and bool(getattr(probe_role.source, "bound", [])))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for datagram in datagrams:
            sender.sendto(datagram, ("127.0.0.1", port))
    await wait_for(lambda: probe_role.source.stats()["datagrams"] >= len(datagrams), timeout=60)  # type: ignore[union-attr]
    records = len(exact_truth(truth, FIELD_ORDER))
    await wait_for(lambda: engine_role.stats.flow_records >= records, timeout=60)
    probe_stop.set()
    await probe_task
    engine_stop.set()
    await engine_task
    await bus.close()

    stats = probe_role.source.stats()  # type: ignore[union-attr]
    assert stats["malformed"] == 0 and stats["missed_flows"] == 0
    scale = max(1, interval)
    # the raw values are kept per exporter beside the renormalised ones: raw = truth, scaled = x N
    flows = exact_truth(truth, FIELD_ORDER).values()
    truth_packets, truth_bytes = sum(f.packets for f in flows), sum(f.bytes for f in flows)
    kept = probe_role.source.decoder.netflow.stats.exporters.as_dict()["127.0.0.1"]  # type: ignore[union-attr]
    assert (kept["raw_packets"], kept["raw_bytes"]) == (truth_packets, truth_bytes)
    assert (kept["packets"], kept["bytes"]) == (truth_packets * scale, truth_bytes * scale)
    tables = {table.task: table for table in engine_role.engine.final_snapshots["exact"].flows}
    for task, fields in TASKS.items():
        want = {
            key: (flow.packets * scale, flow.bytes * scale, flow.first_ns, flow.last_ns)
            for key, flow in exact_truth(truth, [KeyField(name) for name in fields]).items()
        }
        assert table_flows(tables[task]) == want, task

"""Corpus exports replayed over real UDP → collector (probe) → real nats-server → engine.

Each file (or template+data pair) is sent from its own loopback address (127.0.0.10, .11, ...),
as its exporter would, so templates of different exporters never meet. The truth is tshark's
decode of the same files: packets and bytes times the sampling rate it shows. A flood from an
address outside the allow-list is refused and counted, and changes nothing.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import pytest

from netspectra.app import build_engine
from netspectra.bus.nats import NatsBus
from netspectra.capture.flows.datagrams import read_capture_datagrams
from netspectra.config.models import Settings
from netspectra.engine.role import EngineRole
from netspectra.probe.role import ProbeRole
from netspectra.storage.context import StorageContext
from tests.e2e.test_analyze_flows import DECODE, _tshark_lists
from tests.fixtures.nats import NatsServer
from tests.integration.pipeline_helpers import start_engine_role, wait_for
from tests.integration.test_flow_corpus import CORPUS, _netflow_inputs

pytestmark = pytest.mark.skipif(
    not CORPUS.is_dir() or shutil.which("tshark") is None or shutil.which("mergecap") is None,
    reason="needs ../shared/corpus/flows, tshark and mergecap",
)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _netflow_truth(paths: list[Path], tmp_path: Path) -> tuple[int, int]:
    import subprocess

    merged = tmp_path / "truth.pcap"
    subprocess.run(["mergecap", "-F", "pcap", "-a", "-w", str(merged), *map(str, paths)], check=True)
    fields = [
        "cflow.packets", "cflow.octets", "cflow.sampling_interval", "cflow.sampling_packet_interval",
        "cflow.sampling_packet_space",
    ]  # fmt: skip
    packets = octets = 0
    for pk, by, rate, interval, space in _tshark_lists(merged, fields, DECODE):
        if not rate and interval:
            rate = [(interval[0] + (space[0] if space else 0)) // interval[0]]
        rates = rate if len(rate) == len(pk) else [rate[0] if rate else 1] * len(pk)
        packets += sum(p * max(1, r) for p, r in zip(pk, rates, strict=True))
        octets += sum(b * max(1, r) for b, r in zip(by, rates, strict=True))
    return packets, octets


def _sflow_truth(path: Path) -> tuple[int, int]:
    fields = ["sflow_245.header.frame_length", "sflow.flow_sample.sampling_rate"]
    packets = octets = 0
    for lengths, rates in _tshark_lists(path, fields, ["-d", "udp.port==6343,sflow"]):
        packets += sum(rates)
        octets += sum(length * rate for length, rate in zip(lengths, rates, strict=True))
    return packets, octets


# files whose records all have a 5-tuple tshark counts (the datalink/MPLS/SRv6 templates carry none,
# and tshark's cflow.packets of those is not split per record)
NETFLOW = [
    names
    for names in _netflow_inputs()
    if any(k in names[0] for k in ("nfv5", "samplingrate", "-template.pcap", "icmp", "physical"))
]
SFLOW = [
    "akvorado-sflow-data-1140.pcap",
    "tcpdump-sflow_expanded.pcap",
    "akvorado-sflow-data-sflow-ipv4-data.pcap",
]


async def test_udp_exports_through_nats_equal_tsharks_totals(nats_server: NatsServer, tmp_path: Path) -> None:
    netflow_port, sflow_port = _free_udp_port(), _free_udp_port()
    settings = Settings.model_validate(
        {
            "probe": {
                "nats_url": nats_server.url,
                "source": "netflow",
                "listen": [f"127.0.0.1:{netflow_port}", f"127.0.0.1:{sflow_port}"],
                "flows": {"allow": [f"127.0.0.{10 + k}" for k in range(len(NETFLOW) + len(SFLOW))]},
            },
            "engine": {"flush_interval": 0.02, "stats_interval": 1.0},
            "aggregator": {
                "types": ["exact"],
                "exact": {
                    "tasks": [
                        {
                            "name": "five_tuple",
                            "key_fields": ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"],
                        }
                    ]
                },
            },
        }
    )
    engine_bus, probe_bus = NatsBus(nats_server.url), NatsBus(nats_server.url)
    engine_role = EngineRole(settings, engine_bus, build_engine(settings, StorageContext()))
    probe_role = ProbeRole(settings, probe_bus)
    engine_stop, probe_stop = asyncio.Event(), asyncio.Event()
    engine_task = await start_engine_role(engine_role, engine_stop)
    probe_task = asyncio.create_task(probe_role.serve(probe_stop))
    await wait_for(
        lambda: probe_role.source is not None and len(getattr(probe_role.source, "bound", [])) == 2
    )

    sent = 0
    want_packets = want_bytes = 0
    senders = []
    plan: list[tuple[list[Path], int]] = [([CORPUS / n for n in names], netflow_port) for names in NETFLOW]
    plan += [([CORPUS / name], sflow_port) for name in SFLOW]
    for k, (paths, port) in enumerate(plan):
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.bind((f"127.0.0.{10 + k}", 0))
        senders.append(sender)
        for path in paths:
            for datagram in read_capture_datagrams(path):
                sender.sendto(datagram.payload, ("127.0.0.1", port))
                sent += 1
        truth = _sflow_truth(paths[0]) if port == sflow_port else _netflow_truth(paths, tmp_path)
        want_packets += truth[0]
        want_bytes += truth[1]
        # one file at a time: the next exporter's datagrams arrive after this one's are in
        await wait_for(lambda sent=sent: probe_role.source.stats()["datagrams"] >= sent, timeout=60)  # type: ignore[misc, union-attr]
    flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    flood.bind(("127.0.0.99", 0))
    senders.append(flood)
    v5 = next(read_capture_datagrams(CORPUS / "akvorado-netflow-nfv5.pcap")).payload
    for _ in range(200):
        flood.sendto(v5, ("127.0.0.1", netflow_port))
    sent += 200
    await wait_for(lambda: probe_role.source.stats()["datagrams"] >= sent, timeout=60)  # type: ignore[union-attr]
    await wait_for(lambda: probe_role.source.stats()["refused"] == 200)  # type: ignore[union-attr]
    await wait_for(lambda: engine_role.stats.flow_records >= probe_role.flow_records > 0, timeout=60)
    probe_stop.set()
    await probe_task
    engine_stop.set()
    await engine_task
    for sender in senders:
        sender.close()
    await probe_bus.close()
    await engine_bus.close()

    assert probe_role.flow_records_failed == 0
    assert engine_role.stats.flow_rejects == {}
    (table,) = engine_role.engine.final_snapshots["exact"].flows
    assert (int(table.packets.sum()), int(table.bytes.sum())) == (want_packets, want_bytes)

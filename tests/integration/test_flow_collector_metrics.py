"""The flow collector's loss and bad-input counters on /metrics, as the packet path's are.

A probe (``source: netflow``) and an engine in one process (``run --roles=probe,engine``), real
UDP from loopback exporters. What is sent is built here, so the expected counters are known
exactly: scapy's NetFlow v5 layers with a sequence gap, a truncated and a too-short datagram, a
flood from an address outside the allow-list, and one sFlow corpus file (tshark counts its samples).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from scapy.layers.netflow import NetflowHeader, NetflowHeaderV5, NetflowRecordV5

from netspectra.app import Application
from netspectra.capture.flows.datagrams import read_capture_datagrams
from netspectra.config.models import Settings
from tests.integration.test_flow_corpus import CORPUS
from tests.unit.spine.test_telemetry import fetch, samples, wait_for

EXPORTER, AGENT_SENDER, STRANGER = "127.0.0.10", "127.0.0.11", "127.0.0.99"
SFLOW_FILE = CORPUS / "akvorado-sflow-data-1140.pcap"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _v5(sequence: int, records: int) -> bytes:
    packet = NetflowHeader(version=5) / NetflowHeaderV5(
        count=records, sysUptime=100_000, unixSecs=1_700_000_000, flowSequence=sequence
    )
    for k in range(records):
        packet = packet / NetflowRecordV5(
            src="10.0.0.1", dst=f"10.0.1.{k}", srcport=1000 + k, dstport=80, prot=6, dpkts=3, dOctets=300,
            first=90_000, last=99_000,
        )  # fmt: skip
    return bytes(packet)


def _sflow_samples(path: Path) -> tuple[int, str]:
    """tshark's count of flow samples in the file, and the agent address it reads."""
    command = ["tshark", "-n", "-r", str(path), "-d", "udp.port==6343,sflow", "-T", "fields"]
    command += ["-E", "occurrence=a", "-E", "aggregator=;", "-e", "sflow_245.agent"]
    command += ["-e", "sflow_245.agent.v6", "-e", "sflow.flow_sample.sampling_rate"]
    lines = subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()
    v4, v6, _ = lines[0].split("\t")
    samples = sum(len(rates.split(";")) for *_, rates in (line.split("\t") for line in lines) if rates)
    return samples, v4 or v6


@pytest.mark.skipif(
    not SFLOW_FILE.exists() or shutil.which("tshark") is None,
    reason="needs ../shared/corpus/flows and tshark",
)
async def test_collector_counters_equal_what_was_sent(tmp_path: Path) -> None:
    port = _free_udp_port()
    settings = Settings.model_validate(
        {
            "probe": {
                "source": "netflow",
                "listen": [f"127.0.0.1:{port}"],
                "flows": {"allow": [EXPORTER, AGENT_SENDER]},
            },
            "engine": {"flush_interval": 0.02, "stats_interval": 60},
            "aggregator": {
                "types": ["exact"],
                "exact": {"tasks": [{"name": "per_dst_ip", "key_fields": ["DstIP"]}]},
            },
            "metrics": {"listen_addr": "127.0.0.1:0"},
        }
    )
    good = [_v5(0, 2), _v5(2, 2), _v5(7, 3)]  # 3 flows missed between the second and the third
    truncated = _v5(9, 2)[:60]  # says 2 records, carries 36 bytes of them
    short = b"\x00\x05"
    sflow = [d.payload for d in read_capture_datagrams(SFLOW_FILE)]
    sflow_samples, agent = _sflow_samples(SFLOW_FILE)

    app = Application(settings, ["probe", "engine"])
    stop = asyncio.Event()
    running = asyncio.create_task(app.run(stop))
    sockets = {}
    try:
        await wait_for(lambda: app.metrics_server is not None and "probe" in app.built)
        probe = app.built["probe"]
        await wait_for(lambda: len(getattr(probe.source, "bound", [])) == 1)  # type: ignore[attr-defined]
        for address in (EXPORTER, AGENT_SENDER, STRANGER):
            sockets[address] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sockets[address].bind((address, 0))
        for datagram in [*good, truncated, short]:
            sockets[EXPORTER].sendto(datagram, ("127.0.0.1", port))
        for datagram in sflow:
            sockets[AGENT_SENDER].sendto(datagram, ("127.0.0.1", port))
        for _ in range(5):
            sockets[STRANGER].sendto(good[0], ("127.0.0.1", port))
        sent = len(good) + 2 + len(sflow) + 5
        await wait_for(lambda: probe.source.stats()["datagrams"] == sent)  # type: ignore[attr-defined]
        engine = app.built["engine"]
        await wait_for(lambda: engine.stats.flow_records == 7 + sflow_samples)  # type: ignore[attr-defined]
        assert app.metrics_server is not None
        status, body = await fetch(app.metrics_server.port, "/metrics")
    finally:
        stop.set()
        for sender in sockets.values():
            sender.close()
        assert await running == 0
    assert status == "HTTP/1.1 200 OK"
    values = samples(body.decode())

    def value(name: str, **labels: str) -> float:
        return values[(name, tuple(sorted({"role": "probe", **labels}.items())))]

    netflow, sflow_label = {"protocol": "netflow"}, {"protocol": "sflow"}
    assert value("netspectra_collector_datagrams_total", **netflow) == len(good) + 2 + 5
    assert value("netspectra_collector_refused_datagrams_total", **netflow) == 5
    assert value("netspectra_collector_records_total", **netflow) == 7
    assert value("netspectra_collector_malformed_datagrams_total", **netflow, reason="bad_length") == 1
    assert value("netspectra_collector_malformed_datagrams_total", **netflow, reason="short_header") == 1
    assert value("netspectra_collector_missed_flows_total") == 3
    assert value("netspectra_collector_sequence_resets_total", **netflow) == 0
    assert value("netspectra_collector_datagrams_total", **sflow_label) == len(sflow)
    assert value("netspectra_collector_records_total", **sflow_label) == sflow_samples
    assert value("netspectra_collector_sflow_samples_total", kind="flow") == sflow_samples
    at = {**netflow, "exporter": EXPORTER}
    assert value("netspectra_collector_exporter_datagrams_total", **at) == len(good) + 2
    assert value("netspectra_collector_exporter_records_total", **at) == 7
    assert value("netspectra_collector_exporter_missed_flows_total", **at) == 3
    # raw as sent (7 records of 3 packets, 300 bytes; unsampled, so renormalised is the same)
    assert value("netspectra_collector_exporter_raw_packets_total", **at) == 21
    assert value("netspectra_collector_exporter_raw_bytes_total", **at) == 2100
    assert value("netspectra_collector_exporter_packets_total", **at) == 21
    assert ("netspectra_collector_exporter_datagrams_total", (("exporter", STRANGER),)) not in values
    sflow_agent = {**sflow_label, "exporter": agent}
    assert value("netspectra_collector_exporter_records_total", **sflow_agent) == sflow_samples
    assert value("netspectra_probe_published_flow_records_total") == 7 + sflow_samples
    assert value("netspectra_probe_bus_refused_flow_records_total") == 0
    assert value("netspectra_collector_template_pending") == 0
    # every datagram sent was received (the counts above), so the kernel dropped none; the buffer
    # granted is what the default asks (32 MiB) or the host's cap, never 0
    assert value("netspectra_collector_kernel_dropped_datagrams_total") == 0
    assert value("netspectra_collector_oversize_datagrams_total") == 0
    assert value("netspectra_collector_receive_buffer_bytes", listen=f"127.0.0.1:{port}") > 0

"""``netspectra analyze --flows`` on export captures: totals equal tshark's decode times the sampling rate.

tshark's ``cflow.packets``/``cflow.octets`` (NetFlow/IPFIX) and ``sflow_245.header.frame_length``
(one packet per sFlow sample) times the sampling interval it shows for the same records are the
independent truth for what the exact tasks must hold.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.tools import venv_tool
from tests.integration.test_flow_corpus import CORPUS

NETSPECTRA = venv_tool("netspectra")
pytestmark = pytest.mark.skipif(
    not CORPUS.is_dir() or shutil.which("tshark") is None or shutil.which("mergecap") is None,
    reason="needs ../shared/corpus/flows, tshark and mergecap",
)
DECODE = [a for port in (2055, 2100, 8096, 9990) for a in ("-d", f"udp.port=={port},cflow")]


def _tshark_lists(path: Path, fields: list[str], decode: list[str]) -> list[list[list[int]]]:
    command = ["tshark", "-n", "-r", str(path), *decode, "-T", "fields", "-E", "occurrence=a"]
    for name in fields:
        command += ["-e", name]
    lines = subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()
    return [
        [[int(v) for v in cell.split(",")] if cell else [] for cell in line.split("\t")] for line in lines
    ]


def _analyze(path: Path, tmp_path: Path) -> dict:
    config = tmp_path / "config.yaml"
    config.write_text(
        "aggregator:\n  types: [exact]\n  exact:\n    tasks:\n"
        "      - {name: five_tuple, key_fields: [SrcIP, DstIP, SrcPort, DstPort, Protocol]}\n"
        "      - {name: per_protocol, key_fields: [Protocol]}\n"
        "    writers: []\n"
    )
    result = subprocess.run(
        [NETSPECTRA, "analyze", "--flows", "--json", "--top", "100000", "-c", str(config), str(path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _totals(document: dict, task: str) -> tuple[int, int]:
    top = document["exact"][task]["top"]
    return sum(f["packets"] for f in top), sum(f["bytes"] for f in top)


@pytest.mark.parametrize(
    "names",
    [
        ("akvorado-netflow-nfv5.pcap",),
        ("akvorado-netflow-samplingrate-template.pcap", "akvorado-netflow-samplingrate-data.pcap"),
        ("akvorado-netflow-template.pcap", "akvorado-netflow-data.pcap"),
        ("akvorado-netflow-physicalinterfaces.pcap",),
    ],
    ids=lambda names: names[-1],
)
def test_netflow_totals_equal_tsharks(names: tuple[str, ...], tmp_path: Path) -> None:
    merged = tmp_path / "exports.pcap"
    subprocess.run(
        ["mergecap", "-F", "pcap", "-a", "-w", str(merged), *(str(CORPUS / n) for n in names)], check=True
    )
    packets = octets = raw_packets = raw_octets = 0
    fields = [
        "cflow.packets", "cflow.octets", "cflow.sampling_interval", "cflow.sampling_packet_interval",
        "cflow.sampling_packet_space",
    ]  # fmt: skip
    for pk, by, rate, interval, space in _tshark_lists(merged, fields, DECODE):
        if not rate and interval:  # IPFIX option data: 1 in (interval + space) / interval
            rate = [(interval[0] + (space[0] if space else 0)) // interval[0]]
        rates = rate if len(rate) == len(pk) else [rate[0] if rate else 1] * len(pk)
        packets += sum(p * max(1, r) for p, r in zip(pk, rates, strict=True))
        octets += sum(b * max(1, r) for b, r in zip(by, rates, strict=True))
        raw_packets += sum(pk)
        raw_octets += sum(by)
    assert packets > 0
    pcapng = tmp_path / "exports.pcapng"  # the same capture as pcapng (editcap, Wireshark's)
    subprocess.run(["editcap", "-F", "pcapng", str(merged), str(pcapng)], check=True)
    for capture in (merged, pcapng):
        document = _analyze(capture, tmp_path)
        assert (document["packets"], document["bytes"]) == (packets, octets), capture.name
        assert _totals(document, "five_tuple") == (packets, octets)
        assert _totals(document, "per_protocol") == (packets, octets)
        # the raw values are kept too: per exporter, as tshark reads them, beside the renormalised
        (exporter,) = document["exporters"].values()  # each of these captures has one exporter
        assert (exporter["raw_packets"], exporter["raw_bytes"]) == (raw_packets, raw_octets)
        assert (exporter["packets"], exporter["bytes"]) == (packets, octets)


def test_sflow_totals_equal_tsharks(tmp_path: Path) -> None:
    path = CORPUS / "akvorado-sflow-data-1140.pcap"
    packets = octets = samples = raw_octets = 0
    fields = ["sflow_245.header.frame_length", "sflow.flow_sample.sampling_rate"]
    for lengths, rates in _tshark_lists(path, fields, ["-d", "udp.port==6343,sflow"]):
        packets += sum(rates)
        octets += sum(length * rate for length, rate in zip(lengths, rates, strict=True))
        samples += len(rates)
        raw_octets += sum(lengths)
    document = _analyze(path, tmp_path)
    assert _totals(document, "five_tuple") == (packets, octets)
    (agent,) = document["exporters"].values()  # raw: one packet per sample, its frame length
    assert (agent["raw_packets"], agent["raw_bytes"], agent["records"]) == (samples, raw_octets, samples)
    assert (agent["packets"], agent["bytes"]) == (packets, octets)

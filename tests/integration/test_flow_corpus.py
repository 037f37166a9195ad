"""Every flow-export capture of the corpus through our decoders; every record equals tshark's decode.

tshark is the independent truth: ``-d udp.port==PORT,cflow`` (NetFlow/IPFIX) or ``sflow`` with
``-T fields -E occurrence=a``; a template file and its data file are fed to both in one stream
(tshark after ``mergecap -a``), so both see the template first. Each datagram is decoded on its
own (one decode call per frame, state carried across) so the records line up frame by frame.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from netspectra.capture.flows.datagrams import DatagramBatch, address_text, read_capture_datagrams
from netspectra.capture.flows.netflow import NetFlowDecoder
from netspectra.capture.flows.sflow import SFlowDecoder
from netspectra.model.flows import FlowColumns


def _find_corpus() -> Path:
    candidates = [Path(__file__).resolve().parents[3] / "shared" / "corpus" / "flows"]
    if os.environ.get("NETSPECTRA_FLOW_CORPUS"):
        candidates.insert(0, Path(os.environ["NETSPECTRA_FLOW_CORPUS"]))
    candidates.append(Path("/work/shared/corpus/flows"))
    return next((c for c in candidates if c.is_dir()), candidates[0])


CORPUS = _find_corpus()
pytestmark = pytest.mark.skipif(
    not CORPUS.is_dir() or shutil.which("tshark") is None or shutil.which("mergecap") is None,
    reason="needs ../shared/corpus/flows, tshark and mergecap",
)
PORTS = (2055, 2100, 8096, 9990)
CFLOW_FIELDS = (
    "cflow.srcaddr", "cflow.dstaddr", "cflow.srcaddrv6", "cflow.dstaddrv6", "cflow.srcport",
    "cflow.dstport", "cflow.protocol", "cflow.packets", "cflow.octets", "cflow.sampling_interval",
)  # fmt: skip


def _netflow_inputs() -> list[tuple[str, ...]]:
    """Single files, and (template, data) pairs in the order they must be fed."""
    names = sorted(p.name for p in CORPUS.glob("akvorado-netflow-*.pcap"))
    pairs = []
    for name in names:
        if name.endswith("-template.pcap"):
            data = name.replace("-template.pcap", "-data.pcap")
            pairs.append((name, data))
    paired = {n for pair in pairs for n in pair}
    return pairs + [(n,) for n in names if n not in paired]


def _tshark(
    paths: list[Path], tmp_path: Path, dissector: str, fields: tuple[str, ...]
) -> list[dict[str, list[str]]]:
    if len(paths) > 1:
        merged = tmp_path / "merged.pcap"
        subprocess.run(["mergecap", "-a", "-w", str(merged), *map(str, paths)], check=True)
        path = merged
    else:
        path = paths[0]
    decode = [arg for port in (*PORTS, 6343) for arg in ("-d", f"udp.port=={port},{dissector}")]
    command = [
        "tshark",
        "-n",
        "-r",
        str(path),
        *decode,
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-E",
        "separator=/t",
    ]
    for name in fields:
        command += ["-e", name]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    frames = []
    for line in result.stdout.splitlines():
        cells = line.split("\t")
        frames.append(
            {name: (cell.split(",") if cell else []) for name, cell in zip(fields, cells, strict=True)}
        )
    return frames


def _frames(paths: list[Path]) -> list[DatagramBatch]:
    return [
        DatagramBatch.from_datagrams([(d.payload, d.src, d.ts_ns)])
        for path in paths
        for d in read_capture_datagrams(path)
    ]


def _ours(out: FlowColumns, rows: np.ndarray, column: str) -> list[str]:
    return [str(int(v)) for v in getattr(out, column)[rows]]


def _addresses(out: FlowColumns, version: int, column: str) -> list[str]:
    rows = np.flatnonzero(out.ip_version == version)
    return [address_text(getattr(out, column)[r].tobytes()) for r in rows]


def _row_keys(out: FlowColumns) -> Counter[tuple[object, ...]]:
    return Counter(
        zip(
            map(bytes, out.src_ip), map(bytes, out.dst_ip), out.src_port.tolist(), out.dst_port.tolist(),
            out.protocol.tolist(), out.raw_packets.tolist(), out.raw_bytes.tolist(), strict=True,
        )
    )  # fmt: skip


@pytest.mark.parametrize("names", _netflow_inputs(), ids=lambda names: "+".join(names))
def test_netflow_records_equal_tsharks(names: tuple[str, ...], tmp_path: Path) -> None:
    """The inputs are fed twice: on the second pass every template is known from the start.

    tshark cannot decode a data set that comes before its template in the same datagram ("no
    template found"), where we hold it and decode it after the datagram. So the second pass is
    compared with tshark record by record, and the first pass must hold the same records.
    """
    paths = [CORPUS / name for name in names]
    expected = _tshark(paths + paths, tmp_path, "cflow", CFLOW_FIELDS)
    decoder = NetFlowDecoder()
    first_pass = [decoder.decode(batch) for batch in _frames(paths)]
    second = _frames(paths)
    assert len(first_pass) + len(second) == len(expected)
    total = 0
    for number, (batch, want) in enumerate(zip(second, expected[len(first_pass) :], strict=True), 1):
        out = decoder.decode(batch)
        total += len(out)
        where = f"{'+'.join(names)} frame {number}"
        v4 = out.ip_version == 4
        # a template with both families fills one per record: tshark lists the other as zeros
        assert _addresses(out, 4, "src_ip") == [
            a for a in want["cflow.srcaddr"] if a != "0.0.0.0" or v4.any()
        ], where
        assert _addresses(out, 4, "dst_ip") == [
            a for a in want["cflow.dstaddr"] if a != "0.0.0.0" or v4.any()
        ], where
        assert _addresses(out, 6, "src_ip") == [a for a in want["cflow.srcaddrv6"] if a != "::"], where
        assert _addresses(out, 6, "dst_ip") == [a for a in want["cflow.dstaddrv6"] if a != "::"], where
        every = np.arange(len(out))
        for field, column in (
            ("cflow.srcport", "src_port"),
            ("cflow.dstport", "dst_port"),
            ("cflow.protocol", "protocol"),
            ("cflow.packets", "raw_packets"),
            ("cflow.octets", "raw_bytes"),
        ):
            if want[field]:
                assert _ours(out, every, column) == want[field], f"{where}: {field}"
            else:  # the template has no such field: ours stays zero
                assert not getattr(out, column).any(), f"{where}: {field}"
        in_record = want["cflow.sampling_interval"]
        if in_record and len(in_record) == len(out):  # the records carry their own interval
            assert _ours(out, every, "sampling_rate") == in_record, where
        assert (out.packets == out.raw_packets * out.sampling_rate).all()
        assert (out.bytes == out.raw_bytes * out.sampling_rate).all()
    assert total == sum(len(o) for o in first_pass)
    fresh = NetFlowDecoder()
    twice = [fresh.decode(b) for b in _frames(paths + paths)]
    assert _row_keys(FlowColumns.concat(first_pass)) == _row_keys(
        FlowColumns.concat(twice[len(first_pass) :])
    )
    assert not decoder.stats.malformed, decoder.stats.as_dict()
    assert decoder.pending == 0


def test_option_data_sets_the_rate_of_later_records() -> None:
    """The options pair: option data says 1 in 30000 (tshark: ``cflow.sampling_interval``)."""
    decoder = NetFlowDecoder()
    for batch in _frames(
        [CORPUS / "akvorado-netflow-options-template.pcap", CORPUS / "akvorado-netflow-options-data.pcap"]
    ):
        decoder.decode(batch)
    assert decoder.stats.option_records == 4
    assert decoder.rates and all(30000 in r.values() for r in decoder.rates.values())


def test_data_before_its_template_is_held_then_decoded(tmp_path: Path) -> None:
    """The pair fed backwards: nothing is lost, the data is decoded when the template comes."""
    names = ("akvorado-netflow-samplingrate-template.pcap", "akvorado-netflow-samplingrate-data.pcap")
    paths = [CORPUS / n for n in names]
    forwards = NetFlowDecoder()
    want = FlowColumns.concat([forwards.decode(b) for b in _frames(paths)])
    backwards = NetFlowDecoder()
    got = FlowColumns.concat([backwards.decode(b) for b in _frames(paths[::-1])])
    assert backwards.stats.pending_held > 0
    assert backwards.stats.pending_decoded == backwards.stats.pending_held
    assert backwards.pending == 0
    assert len(got) == len(want) and _row_keys(got) == _row_keys(want)
    assert sorted(got.sampling_rate.tolist()) == sorted(want.sampling_rate.tolist())


def test_held_data_expires_and_is_counted() -> None:
    decoder = NetFlowDecoder(pending_ttl_s=1.0)
    data = _frames([CORPUS / "akvorado-netflow-samplingrate-data.pcap"])
    for batch in data:
        decoder.decode(batch)
    held = decoder.pending
    assert held > 0
    decoder.expire(int(data[-1].recv_ns.max()) + 2 * 10**9)
    assert decoder.pending == 0
    assert decoder.stats.pending_expired == held


def test_templates_survive_a_restart(tmp_path: Path) -> None:
    store = tmp_path / "templates.json"
    first = NetFlowDecoder(template_path=store)
    for batch in _frames([CORPUS / "akvorado-netflow-samplingrate-template.pcap"]):
        first.decode(batch)
    assert store.exists()
    restarted = NetFlowDecoder(template_path=store)
    out = FlowColumns.concat(
        [restarted.decode(b) for b in _frames([CORPUS / "akvorado-netflow-samplingrate-data.pcap"])]
    )
    assert restarted.pending == 0 and len(out) > 0


SFLOW_FIELDS = (
    "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "sflow_245.header.frame_length",
    "sflow.flow_sample.sampling_rate", "sflow_245.sampletype", "udp.srcport", "tcp.srcport",
)  # fmt: skip


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*sflow*.pcap")))
def test_sflow_samples_equal_tsharks(name: str, tmp_path: Path) -> None:
    """Per frame: the sampled headers' addresses (tshark's inner ``ip``/``ipv6`` layers), bytes, rates."""
    path = CORPUS / name
    expected = _tshark([path], tmp_path, "sflow", SFLOW_FIELDS)
    decoder = SFlowDecoder()
    netflow = NetFlowDecoder()
    for number, (batch, want) in enumerate(zip(_frames([path]), expected, strict=True), 1):
        out = decoder.decode(batch)
        where = f"{name} frame {number}"
        if int.from_bytes(batch.payload(0)[:4], "big") != 5:  # NetFlow v5 sent to 6343 (tcpdump's file)
            assert len(out) == 0 and decoder.stats.malformed["bad_version"] > 0
            assert len(netflow.decode(batch)) > 0
            continue
        outer_v4 = 1  # the export datagram's own IPv4 header comes first
        # ICMP errors quote an IP header tshark decodes too: compare as multisets over the samples' outer IP
        assert Counter(_addresses(out, 4, "src_ip")) <= Counter(want["ip.src"][outer_v4:]), where
        assert Counter(_addresses(out, 6, "src_ip")) <= Counter(want["ipv6.src"]), where
        assert Counter(_addresses(out, 4, "dst_ip")) <= Counter(want["ip.dst"][outer_v4:]), where
        samples = len(want["sflow.flow_sample.sampling_rate"])
        assert len(out) == samples, where
        assert (
            sorted(out.raw_bytes.tolist()) == sorted(map(int, want["sflow_245.header.frame_length"]))
            or not want["sflow_245.header.frame_length"]
        ), where
        assert sorted(out.sampling_rate.tolist()) == sorted(
            max(1, int(r)) for r in want["sflow.flow_sample.sampling_rate"]
        )
        assert (out.bytes == out.raw_bytes * out.sampling_rate).all()
    stats = decoder.stats
    assert stats.records == stats.flow_samples - stats.samples_without_key


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.pcap")))
def test_a_pcapng_copy_gives_the_same_datagrams(name: str, tmp_path: Path) -> None:
    """editcap (Wireshark's) writes the pcapng; sender, port, payload and time must all survive."""
    pcapng = tmp_path / "copy.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(CORPUS / name), str(pcapng)], check=True)
    assert pcapng.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    assert list(read_capture_datagrams(pcapng)) == list(read_capture_datagrams(CORPUS / name))

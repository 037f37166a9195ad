"""Probe persistence: rotating pcap files that tshark and CaptureReader read back as the captured packets.

The truth is the generator's ground truth for a mixed trace (IPv4/IPv6, TCP/UDP/ICMP, fragments,
extension headers); tshark is an independent reader of the files we write.
"""

from __future__ import annotations

import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from netspectra.capture.reader import CaptureReader
from netspectra.config.models import PersistenceConfig
from netspectra.model.fields import address_text
from netspectra.model.packets import PacketColumns
from netspectra.probe.persistence import Persistence
from netspectra.synth.traffic import GroundTruth, TrafficSpec, write_trace

ROTATE = 1500
COLUMNS = ("ts_ns", "src_ip", "dst_ip", "src_port", "dst_port", "protocol", "length", "ip_version")


@pytest.fixture(scope="module")
def truth(tmp_path_factory: pytest.TempPathFactory) -> GroundTruth:
    trace = tmp_path_factory.mktemp("trace") / "trace.pcap"
    return write_trace(trace, TrafficSpec(packets=4000, flows=120, seed=3, icmp_fraction=0.1))


def persist(columns: PacketColumns, directory: Path, encoding: str) -> Persistence:
    persistence = Persistence(
        PersistenceConfig(enabled=True, path=str(directory), encoding=encoding, rotate_packets=ROTATE)  # type: ignore[arg-type]
    )
    n = len(columns)
    for begin, end in ((0, 700), (700, 2900), (2900, n)):  # batches that straddle file boundaries
        persistence.offer(PacketColumns(*(getattr(columns, name)[begin:end] for name in COLUMNS)))
    persistence.close()
    return persistence


def test_pcap_rotation_read_back_by_capture_reader(truth: GroundTruth, tmp_path: Path) -> None:
    columns = truth.packets
    persistence = persist(columns, tmp_path, "pcap")
    n = len(columns)
    assert persistence.written == n and persistence.dropped == 0
    files = sorted(tmp_path.glob("capture-*.pcap"))
    assert files == sorted(persistence.files)
    assert len(files) == -(-n // ROTATE)
    counts = []
    batches = []
    for path in files:
        read = PacketColumns.concat(list(CaptureReader(path)))
        counts.append(len(read))
        batches.append(read)
    assert counts == [min(ROTATE, n - i * ROTATE) for i in range(len(files))]
    back = PacketColumns.concat(batches)
    for name in COLUMNS:
        np.testing.assert_array_equal(getattr(back, name), getattr(columns, name), err_msg=name)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (apt-get install tshark)")
def test_pcap_rotation_read_back_by_tshark(truth: GroundTruth, tmp_path: Path) -> None:
    columns = truth.packets
    persist(columns, tmp_path, "pcap")
    fields = ["frame.time_epoch", "frame.len", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst"]
    fields += ["tcp.srcport", "udp.srcport", "tcp.dstport", "udp.dstport", "ip.proto", "ipv6.nxt"]
    rows = []
    for path in sorted(tmp_path.glob("capture-*.pcap")):
        command = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "occurrence=f"]
        for name in fields:
            command += ["-e", name]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        rows += [line.split("\t") for line in output.splitlines()]
    assert len(rows) == len(columns)
    got = [
        (
            int(Decimal(r[0]) * 1_000_000_000),
            int(r[1]),
            r[2] or r[3],
            r[4] or r[5],
            int(r[6] or r[7] or 0),
            int(r[8] or r[9] or 0),
            int(r[10] or r[11]),
        )
        for r in rows
    ]
    expected = [
        (
            int(columns.ts_ns[i]),
            int(columns.length[i]),
            address_text(columns.src_ip[i]),
            address_text(columns.dst_ip[i]),
            int(columns.src_port[i]) if columns.protocol[i] in (6, 17) else 0,
            int(columns.dst_port[i]) if columns.protocol[i] in (6, 17) else 0,
            int(columns.protocol[i]),
        )
        for i in range(len(columns))
    ]
    assert got == expected


def test_text_rotation_one_line_per_packet(truth: GroundTruth, tmp_path: Path) -> None:
    columns = truth.packets
    persist(columns, tmp_path, "text")
    lines = []
    for path in sorted(tmp_path.glob("capture-*.txt")):
        lines += path.read_text().splitlines()
    assert len(lines) == len(columns)
    i = len(columns) // 2
    assert lines[i] == (
        f"{int(columns.ts_ns[i])} {address_text(columns.src_ip[i])}:{int(columns.src_port[i])} -> "
        f"{address_text(columns.dst_ip[i])}:{int(columns.dst_port[i])} proto {int(columns.protocol[i])} "
        f"len {int(columns.length[i])}"
    )


def test_full_queue_drops_from_persistence_only(tmp_path: Path, truth: GroundTruth) -> None:
    """A stalled writer never blocks the probe: batches beyond the queue are counted as dropped."""
    persistence = Persistence(PersistenceConfig(enabled=True, path=str(tmp_path), channel_buffer_size=1))
    one = truth.packets.head(10)
    offered = 200
    for _ in range(offered):
        persistence.offer(one)
    persistence.close()
    assert persistence.written + persistence.dropped == offered * 10
    written = sum(len(b) for path in persistence.files for b in CaptureReader(path))
    assert written == persistence.written


@pytest.mark.parametrize("error", [OSError("disk gone"), ValueError("encoder bug")])
def test_writer_failure_never_blocks_offer_or_close(
    truth: GroundTruth, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    """A dead writer must not fill the queue and hang close() (which would hang probe shutdown)."""
    import threading

    import netspectra.probe.persistence as module

    def broken(columns: PacketColumns) -> bytes:
        raise error

    monkeypatch.setattr(module, "pcap_records", broken)
    persistence = Persistence(
        PersistenceConfig(enabled=True, path=str(tmp_path), channel_buffer_size=2, rotate_packets=ROTATE)  # type: ignore[arg-type]
    )
    batch = PacketColumns(*(getattr(truth.packets, name)[:10] for name in COLUMNS))
    for _ in range(50):
        persistence.offer(batch)
    closer = threading.Thread(target=persistence.close, daemon=True)
    closer.start()
    closer.join(timeout=10)
    assert not closer.is_alive(), "close() blocked after the writer thread failed"
    assert (persistence.written, persistence.dropped) == (0, 50 * 10)

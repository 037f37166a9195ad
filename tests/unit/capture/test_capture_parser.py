"""The capture parser against the generator's independent ground truth, field by field."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from netspectra.capture import CaptureReader, CaptureStreamParser
from netspectra.model.packets import PacketColumns
from netspectra.synth import GroundTruth, TrafficSpec, write_trace

FIELDS = ("ts_ns", "src_ip", "dst_ip", "src_port", "dst_port", "protocol", "length", "ip_version")
# Rich traffic: many tags, extension headers and fragments so every decoding rule is exercised.
RICH = dict(
    ext_header_fraction=0.5, fragment_fraction=0.3, qinq_fraction=0.2, vlan_fraction=0.3, ipv6_fraction=0.5
)


def assert_rows_equal(got: PacketColumns, truth: PacketColumns) -> None:
    assert len(got) == len(truth)
    for name in FIELDS:
        a, b = getattr(got, name), getattr(truth, name)
        assert a.dtype == b.dtype, name
        if len(a) == 0:
            continue
        bad = np.nonzero((a != b).reshape(len(a), -1).any(axis=1))[0]
        assert bad.size == 0, f"{name} differs in rows {bad[:10].tolist()}"


def read_all(path: Path, **kwargs: int) -> tuple[PacketColumns, CaptureReader]:
    with CaptureReader(path, **kwargs) as reader:
        batches = list(reader)
    return PacketColumns.concat(batches), reader


def check_file(path: Path, spec: TrafficSpec, truth: GroundTruth, **kwargs: int) -> None:
    got, reader = read_all(path, **kwargs)
    assert reader.error is None
    assert_rows_equal(got, truth.packets)
    assert reader.frames == spec.packets
    assert reader.packets == len(truth.packets)
    assert reader.bytes == int(truth.packets.length.sum())
    assert reader.skips == truth.skipped
    assert reader.bytes_read == reader.total_bytes == path.stat().st_size


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("nanosecond", [False, True])
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_every_field_of_every_row(tmp_path: Path, fmt: str, nanosecond: bool, big_endian: bool) -> None:
    spec = TrafficSpec(packets=6000, flows=300, format=fmt, nanosecond=nanosecond, big_endian=big_endian,
                       spreaders=2, spreader_fanout=40, **RICH)  # fmt: skip
    path = tmp_path / f"trace.{fmt}"
    truth = write_trace(path, spec)
    assert truth.skipped["non_ip"] > 0
    # Small batches and chunks so batch and chunk boundaries fall everywhere.
    check_file(path, spec, truth, batch_size=997, chunk_bytes=4099)


@pytest.mark.parametrize("snaplen", [30, 36, 40, 54, 62, 66, 70, 78, 86, 96, 102, 1600])
def test_snap_lengths_cut_headers_as_documented(tmp_path: Path, snaplen: int) -> None:
    spec = TrafficSpec(packets=4000, flows=200, snaplen=snaplen, **RICH)
    truth = write_trace(tmp_path / "t.pcap", spec)
    check_file(tmp_path / "t.pcap", spec, truth)


@pytest.mark.parametrize("linktype", [0, 101, 108, 113, 228, 229, 276])
def test_link_types_in_classic_pcap(tmp_path: Path, linktype: int) -> None:
    spec = TrafficSpec(packets=3000, flows=100, linktypes=(linktype,), **RICH)
    truth = write_trace(tmp_path / "t.pcap", spec)
    check_file(tmp_path / "t.pcap", spec, truth)


@pytest.mark.parametrize("linktypes", [(1, 113), (101, 1), (276, 0, 108, 101, 228, 229, 113, 1)])
def test_pcapng_interfaces_with_different_link_types(tmp_path: Path, linktypes: tuple[int, ...]) -> None:
    spec = TrafficSpec(packets=4000, flows=150, format="pcapng", linktypes=linktypes, snaplen=80, **RICH)
    truth = write_trace(tmp_path / "t.pcapng", spec)
    check_file(tmp_path / "t.pcapng", spec, truth)


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[bytes, GroundTruth]]:
    out = {}
    for fmt in ("pcap", "pcapng"):
        path = tmp_path_factory.mktemp(fmt) / f"small.{fmt}"
        truth = write_trace(path, TrafficSpec(packets=24, flows=5, format=fmt, seed=7, **RICH))
        out[fmt] = (path.read_bytes(), truth)
    return out


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_stream_parser_split_at_every_offset(
    small_trace: dict[str, tuple[bytes, GroundTruth]], fmt: str
) -> None:
    data, truth = small_trace[fmt]
    for cut in range(len(data) + 1):
        parser = CaptureStreamParser(initial_buffer=64)
        parts = [parser.feed(data[:cut]), parser.feed(memoryview(data)[cut:])]
        parser.close()
        assert parser.error is None, cut
        assert_rows_equal(PacketColumns.concat(parts), truth.packets)
        assert parser.skips == truth.skipped


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_stream_parser_byte_by_byte(small_trace: dict[str, tuple[bytes, GroundTruth]], fmt: str) -> None:
    data, truth = small_trace[fmt]
    parser = CaptureStreamParser()
    parts = [parser.feed(data[i : i + 1]) for i in range(len(data))]
    assert_rows_equal(PacketColumns.concat(parts), truth.packets)
    assert parser.frames == 24


def record_ends(data: bytes, fmt: str) -> list[int]:
    """Offsets where each record ends, from the file layout (independent of the parser)."""
    ends = []
    if fmt == "pcap":
        pos = 24
        while pos < len(data):
            pos += 16 + int.from_bytes(data[pos + 8 : pos + 12], "little")
            ends.append(pos)
    else:
        pos = 0
        while pos < len(data):
            pos += int.from_bytes(data[pos + 4 : pos + 8], "little")
            ends.append(pos)
    return ends


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_truncated_file_keeps_complete_records(
    tmp_path: Path, small_trace: dict[str, tuple[bytes, GroundTruth]], fmt: str
) -> None:
    data, truth = small_trace[fmt]
    ends = record_ends(data, fmt)
    first_packet_end = ends[0] if fmt == "pcap" else ends[2]  # pcapng: SHB, IDB, then packets
    for cut in (first_packet_end + 5, ends[-3] + 1, len(data) - 1):
        path = tmp_path / "cut"
        path.write_bytes(data[:cut])
        got, reader = read_all(path)
        complete = sum(1 for end in ends if end <= cut) - (0 if fmt == "pcap" else 2)
        emitted_before = int(np.searchsorted(truth.frame_index, complete))
        assert_rows_equal(got, truth.packets.head(emitted_before))
        assert reader.error is not None and "middle of a record" in reader.error
        assert reader.skips.get("truncated_record") == 1
        assert reader.frames == complete


def patched(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


def test_absurd_caplen_ends_the_file_and_keeps_earlier_packets(
    tmp_path: Path, small_trace: dict[str, tuple[bytes, GroundTruth]]
) -> None:
    data, truth = small_trace["pcap"]
    ends = record_ends(data, "pcap")
    bad_record = 10
    path = tmp_path / "corrupt.pcap"
    path.write_bytes(patched(data, ends[bad_record - 1] + 8, b"\xff\xff\xff\x7f"))
    got, reader = read_all(path)
    assert reader.error is not None
    assert f"corrupt capture at byte {ends[bad_record - 1]}" in reader.error
    assert reader.frames == bad_record
    assert_rows_equal(got, truth.packets.head(int(np.searchsorted(truth.frame_index, bad_record))))


@pytest.mark.parametrize("bad_length", [b"\x05\x00\x00\x00", b"\xff\xff\xff\xff", b"\x0c\x00\x00\x00"])
def test_bad_pcapng_block_length(
    tmp_path: Path, small_trace: dict[str, tuple[bytes, GroundTruth]], bad_length: bytes
) -> None:
    data, truth = small_trace["pcapng"]
    ends = record_ends(data, "pcapng")
    block = 2 + 6  # SHB, IDB, then 6 packets survive
    path = tmp_path / "corrupt.pcapng"
    path.write_bytes(patched(data, ends[block - 1] + 4, bad_length))
    got, reader = read_all(path)
    assert reader.error is not None
    assert reader.frames == 6
    assert_rows_equal(got, truth.packets.head(int(np.searchsorted(truth.frame_index, 6))))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty input"),
        (b"\xd4\xc3\xb2", "inside the capture header"),
        (b"GET / HTTP/1.1\r\n\r\n", "not a pcap or pcapng"),
        (b"\x1f\x8b\x08\x00" + bytes(40), "gzip"),
        (b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x11\x22\x33\x44" + bytes(16), "byte-order magic"),
    ],
)
def test_not_a_capture(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "junk"
    path.write_bytes(content)
    got, reader = read_all(path)
    assert len(got) == 0
    assert reader.error is not None and message in reader.error


def test_reader_accepts_a_file_object_and_pipe_like_source(
    small_trace: dict[str, tuple[bytes, GroundTruth]],
) -> None:
    data, truth = small_trace["pcapng"]

    class Pipe(io.RawIOBase):
        """Hands out at most 7 bytes per read, like a slow pipe."""

        def __init__(self) -> None:
            self.data, self.pos = data, 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
            size = min(7, len(buffer), len(self.data) - self.pos)
            buffer[:size] = self.data[self.pos : self.pos + size]
            self.pos += size
            return size

    with CaptureReader(Pipe(), batch_size=5) as reader:  # type: ignore[arg-type]
        got = PacketColumns.concat(list(reader))
        assert reader.total_bytes is None
    assert_rows_equal(got, truth.packets)


def test_missing_file_raises_capture_error(tmp_path: Path) -> None:
    from netspectra.errors import CaptureError

    with pytest.raises(CaptureError, match="cannot open capture file"):
        CaptureReader(tmp_path / "nope.pcap")


def test_batches_own_their_arrays(tmp_path: Path) -> None:
    spec = TrafficSpec(packets=3000, flows=50)
    truth = write_trace(tmp_path / "t.pcap", spec)
    with CaptureReader(tmp_path / "t.pcap", batch_size=256) as reader:
        batches = list(reader)  # kept without copying: later batches must not overwrite earlier ones
    assert all(len(b) == 256 for b in batches[:-1])
    assert_rows_equal(PacketColumns.concat(batches), truth.packets)


def test_reader_closes_its_file_when_iteration_ends(
    tmp_path: Path, small_trace: dict[str, tuple[bytes, GroundTruth]]
) -> None:
    """Without ``with``: the file closes when the batches run out, or when the caller stops early."""
    data, truth = small_trace["pcap"]
    path = tmp_path / "t.pcap"
    path.write_bytes(data)

    exhausted = CaptureReader(path, batch_size=5)
    assert PacketColumns.concat(list(exhausted)).length.sum() == truth.packets.length.sum()
    assert exhausted._file.closed

    broken_off = CaptureReader(path, batch_size=5)
    batches = iter(broken_off)
    next(batches)
    assert not broken_off._file.closed  # still reading
    batches.close()  # what a ``for`` loop left by ``break`` does once the generator is dropped
    assert broken_off._file.closed

    class Borrowed(io.BytesIO):
        pass

    borrowed = Borrowed(data)
    list(CaptureReader(borrowed))  # type: ignore[arg-type]
    assert not borrowed.closed  # a file object the caller passed in stays the caller's

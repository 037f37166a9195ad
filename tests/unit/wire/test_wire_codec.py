"""The numba codec against the official protobuf package (upb), with hypothesis.

Truth is always the official implementation: its serialisation for the encoder, its parser for
the decoder (including what it rejects). Raw inputs are built by concatenating official
serialisations of partial messages (which protobuf defines as a merge: fields out of order,
repeated sub-messages, last scalar wins) with hand-framed unknown fields of every wire type.
"""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest
from google.protobuf import message_factory
from google.protobuf.internal.encoder import _VarintBytes  # the official varint writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netspectra.model.packets import PacketColumns
from netspectra.wire import codec
from netspectra.wire.generated import v1  # noqa: F401  (registers the descriptors in the pool)
from netspectra.wire.generated.google_proto_descriptor_pool import default_google_proto_descriptor_pool

PacketInfo = message_factory.GetMessageClass(
    default_google_proto_descriptor_pool.FindMessageTypeByName("v1.PacketInfo")
)
PacketBatch = message_factory.GetMessageClass(
    default_google_proto_descriptor_pool.FindMessageTypeByName("v1.PacketBatch")
)
DecodeError = __import__("google.protobuf.message", fromlist=["DecodeError"]).DecodeError

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ipv4 = st.binary(min_size=4, max_size=4)
ipv6 = st.binary(min_size=16, max_size=16)
#: Times and lengths a capture can carry (accepted) mixed with the whole int64/uint64 range
#: (rejected as bad_timestamp / bad_length), so both outcomes are drawn often.
timestamps_ns = st.one_of(
    st.integers(0, (codec.MAX_TIMESTAMP_SECONDS + 1) * 10**9 - 1), st.integers(-(2**62), 2**62)
)
wire_lengths = st.one_of(st.integers(0, codec.MAX_PACKET_LENGTH + 1), st.integers(0, 2**64 - 1))
packet_rows = st.tuples(
    timestamps_ns,
    st.booleans(),  # ipv6?
    ipv6,
    ipv6,
    st.integers(0, 65535),
    st.integers(0, 65535),
    st.integers(0, 255),
    wire_lengths,
)


def columns_of(rows: list[tuple]) -> PacketColumns:
    columns = PacketColumns.empty(len(rows))
    for i, (ts, is6, src, dst, sport, dport, proto, length) in enumerate(rows):
        columns.ts_ns[i] = ts
        columns.src_ip[i] = np.frombuffer(src if is6 else bytes(10) + b"\xff\xff" + src[:4], np.uint8)
        columns.dst_ip[i] = np.frombuffer(dst if is6 else bytes(10) + b"\xff\xff" + dst[:4], np.uint8)
        columns.src_port[i] = sport
        columns.dst_port[i] = dport
        columns.protocol[i] = proto
        columns.length[i] = length
        columns.ip_version[i] = 6 if is6 else 4
    return columns


def official_message(row: tuple):  # type: ignore[no-untyped-def]
    """What the Go probe sends: timestamp and five_tuple always present."""
    ts, is6, src, dst, sport, dport, proto, length = row
    message = PacketInfo()
    message.timestamp.seconds, message.timestamp.nanos = divmod(ts, 10**9)
    message.timestamp.SetInParent()
    message.five_tuple.src_ip = src if is6 else src[:4]
    message.five_tuple.dst_ip = dst if is6 else dst[:4]
    message.five_tuple.src_port = sport
    message.five_tuple.dst_port = dport
    message.five_tuple.protocol = proto
    message.length = length
    return message


@SETTINGS
@given(st.lists(packet_rows, min_size=0, max_size=20))
def test_encoder_bytes_equal_official_serialisation(rows: list[tuple]) -> None:
    encoded = codec.encode_packets(columns_of(rows))
    assert encoded.messages() == [official_message(row).SerializeToString() for row in rows]
    batch = PacketBatch()
    batch.packets.extend(official_message(row) for row in rows)
    assert encoded.data == batch.SerializeToString()
    chunks = encoded.batches(7)
    assert [count for _, count in chunks] == [min(7, len(rows) - i) for i in range(0, len(rows), 7)]
    assert b"".join(data for data, _ in chunks) == encoded.data


# --- decoder ---------------------------------------------------------------------------------


def expected_row(message) -> tuple[str, tuple | None]:  # type: ignore[no-untyped-def]
    """The outcome the decoder promises for an officially parsed PacketInfo."""
    tup = message.five_tuple
    if not message.HasField("five_tuple") or not tup.src_ip or not tup.dst_ip:
        return "missing_address", None
    if len(tup.src_ip) not in (4, 16) or len(tup.dst_ip) not in (4, 16):
        return "bad_address", None
    if tup.src_port > 65535 or tup.dst_port > 65535 or tup.protocol > 255:
        return "bad_value", None
    seconds, nanos = message.timestamp.seconds, message.timestamp.nanos
    if not (0 <= seconds <= codec.MAX_TIMESTAMP_SECONDS and 0 <= nanos < 10**9):
        return "bad_timestamp", None
    if message.length > codec.MAX_PACKET_LENGTH:
        return "bad_length", None

    def text(raw: bytes) -> str:
        return str(ipaddress.ip_address(raw))

    ts = seconds * 10**9 + nanos
    version = 4 if len(tup.src_ip) == 4 and len(tup.dst_ip) == 4 else 6
    return "ok", (
        ts,
        text(tup.src_ip),
        text(tup.dst_ip),
        tup.src_port,
        tup.dst_port,
        tup.protocol,
        message.length,
        version,
    )


def decoded_rows(columns: PacketColumns) -> list[tuple]:
    def text(raw: np.ndarray) -> str:
        address = ipaddress.IPv6Address(bytes(raw))
        return str(address.ipv4_mapped or address)

    return [
        (
            int(columns.ts_ns[i]),
            text(columns.src_ip[i]),
            text(columns.dst_ip[i]),
            int(columns.src_port[i]),
            int(columns.dst_port[i]),
            int(columns.protocol[i]),
            int(columns.length[i]),
            int(columns.ip_version[i]),
        )
        for i in range(len(columns))
    ]


def mapped_text(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


def tag(field: int, wire_type: int) -> bytes:
    return _VarintBytes((field << 3) | wire_type)


@st.composite
def unknown_field(draw: st.DrawFn, known: tuple[int, ...]) -> bytes:
    """An unknown field (or a known number with the wrong wire type) of any wire type."""
    field = draw(st.integers(1, 40))
    wire_type = draw(st.sampled_from([0, 1, 2, 3, 5]))
    if field in known and wire_type in (0, 2):
        field += 40  # a mismatched wire type on a known field is tested separately
    if wire_type == 0:
        return tag(field, 0) + _VarintBytes(draw(st.integers(0, 2**64 - 1)))
    if wire_type == 1:
        return tag(field, 1) + draw(st.binary(min_size=8, max_size=8))
    if wire_type == 5:
        return tag(field, 5) + draw(st.binary(min_size=4, max_size=4))
    if wire_type == 2:
        payload = draw(st.binary(max_size=20))
        return tag(field, 2) + _VarintBytes(len(payload)) + payload
    inner = tag(1, 0) + _VarintBytes(draw(st.integers(0, 300)))
    return tag(field, 3) + inner + tag(field, 4)


def address_strategy() -> st.SearchStrategy[bytes]:
    return st.one_of(ipv4, ipv6, st.binary(max_size=20))


@st.composite
def tuple_parts(draw: st.DrawFn) -> bytes:
    """Pieces of a FiveTuple: official serialisations of partial messages plus unknown fields."""
    parts: list[bytes] = []
    for _ in range(draw(st.integers(0, 4))):
        choice = draw(st.integers(0, 2))
        if choice == 0:
            part = PacketInfo().five_tuple.__class__()
            if draw(st.booleans()):
                part.src_ip = draw(address_strategy())
            if draw(st.booleans()):
                part.dst_ip = draw(address_strategy())
            if draw(st.booleans()):
                part.src_port = draw(st.integers(0, 70000))
            if draw(st.booleans()):
                part.dst_port = draw(st.integers(0, 70000))
            if draw(st.booleans()):
                part.protocol = draw(st.integers(0, 300))
            parts.append(part.SerializeToString())
        elif choice == 1:
            parts.append(draw(unknown_field((1, 2, 3, 4, 5))))
        else:  # a large varint for a 32-bit field: protobuf keeps the low 32 bits
            parts.append(tag(draw(st.integers(3, 5)), 0) + _VarintBytes(draw(st.integers(0, 2**64 - 1))))
    return b"".join(parts)


@st.composite
def info_bytes(draw: st.DrawFn) -> bytes:
    """A PacketInfo as raw bytes: partial messages in any order, merged, with unknown fields."""
    parts: list[bytes] = []
    for _ in range(draw(st.integers(0, 5))):
        choice = draw(st.integers(0, 6))
        if choice >= 5:  # a complete message as the Go probe sends it
            parts.append(official_message(draw(packet_rows)).SerializeToString())
        elif choice == 0:
            seconds = draw(
                st.one_of(st.integers(0, codec.MAX_TIMESTAMP_SECONDS + 1), st.integers(-(2**40), 2**40))
            )
            nanos = draw(st.one_of(st.integers(0, 10**9), st.integers(-(2**31), 2**31 - 1)))
            ts = b""
            if draw(st.booleans()):
                ts += tag(1, 0) + _VarintBytes(seconds & (2**64 - 1))
            if draw(st.booleans()):
                ts += tag(2, 0) + _VarintBytes(nanos & (2**64 - 1))
            if draw(st.booleans()):
                ts += draw(unknown_field((1, 2)))
            parts.append(tag(1, 2) + _VarintBytes(len(ts)) + ts)
        elif choice == 1:
            body = draw(tuple_parts())
            parts.append(tag(2, 2) + _VarintBytes(len(body)) + body)
        elif choice == 2:
            parts.append(tag(3, 0) + _VarintBytes(draw(wire_lengths)))
        elif choice == 3:
            parts.append(draw(unknown_field((1, 2, 3))))
        else:  # a known field with the wrong wire type is an unknown field for protobuf
            field = draw(st.integers(1, 3))
            wire_type = draw(st.sampled_from([0, 1, 5] if field < 3 else [1, 2, 5]))
            payload = {0: b"\x96\x01", 1: bytes(8), 2: b"\x02ab", 5: bytes(4)}[wire_type]
            parts.append(tag(field, wire_type) + payload)
    return b"".join(parts)


def official_outcome(data: bytes) -> tuple[str, tuple | None]:
    try:
        message = PacketInfo.FromString(data)
    except DecodeError:
        return "rejected", None
    return expected_row(message)


#: Reasons the official parser accepts the message for, but we do not (each entry on its own).
CONTENT_REASONS = ("missing_address", "bad_address", "bad_value", "bad_timestamp", "bad_length")


def check_messages(messages: list[bytes]) -> None:
    result = codec.decode_packet_infos(messages)
    outcomes = [official_outcome(message) for message in messages]
    assert decoded_rows(result.columns) == [row for status, row in outcomes if status == "ok"]
    for reason in CONTENT_REASONS:
        assert result.rejects[reason] == sum(status == reason for status, _ in outcomes)
    structural = sum(result.rejects[r] for r in ("truncated", "varint_too_long", "bad_tag", "too_deep"))
    assert structural == sum(status == "rejected" for status, _ in outcomes)


@SETTINGS
@given(st.lists(info_bytes(), max_size=8))
def test_decoder_matches_official_parser_on_merged_messages(messages: list[bytes]) -> None:
    check_messages(messages)


@SETTINGS
@given(st.lists(info_bytes(), min_size=1, max_size=4), st.data())
def test_decoder_matches_official_parser_on_truncated_and_corrupted_bytes(
    messages: list[bytes], data: st.DataObject
) -> None:
    damaged = []
    for message in messages:
        cut = data.draw(st.integers(0, len(message)))
        flip = data.draw(st.binary(max_size=3))
        at = data.draw(st.integers(0, cut))
        damaged.append(message[:at] + flip + message[at:cut])
    check_messages(damaged)


@SETTINGS
@given(st.lists(st.binary(max_size=40), max_size=10))
def test_decoder_matches_official_parser_on_garbage(messages: list[bytes]) -> None:
    check_messages(messages)


@SETTINGS
@given(st.lists(st.one_of(info_bytes(), st.binary(max_size=30)), max_size=6), st.booleans())
def test_batch_decoder_matches_official_parser(entries: list[bytes], truncate: bool) -> None:
    data = b"".join(tag(1, 2) + _VarintBytes(len(entry)) + entry for entry in entries)
    if truncate and data:
        data = data[:-1]
    result = codec.decode_packet_batch(data)
    try:
        batch = PacketBatch.FromString(data)
    except DecodeError:
        assert len(result.columns) == 0
        assert result.rejected >= 1
        return
    outcomes = [expected_row(message) for message in batch.packets]
    assert decoded_rows(result.columns) == [row for status, row in outcomes if status == "ok"]
    for reason in CONTENT_REASONS:
        assert result.rejects[reason] == sum(status == reason for status, _ in outcomes)


def test_mixed_info_and_batch_messages_in_one_run() -> None:
    rows = [
        (1_700_000_000_000_000_001, False, bytes(range(16)), bytes(range(16, 32)), 1, 2, 6, 60),
        (1_700_000_000_000_000_002, True, bytes(range(16)), bytes(range(16, 32)), 3, 4, 17, 1500),
    ]
    info = official_message(rows[0]).SerializeToString()
    batch = PacketBatch()
    batch.packets.extend(official_message(row) for row in rows)
    batch_bytes = batch.SerializeToString()
    offsets = np.array([0, len(info), len(info) + len(batch_bytes), len(info) + len(batch_bytes) + 3])
    kinds = np.array([codec.KIND_PACKET_INFO, codec.KIND_PACKET_BATCH, codec.KIND_PACKET_INFO], np.uint8)
    result = codec.decode_messages(info + batch_bytes + b"\x0a\x05\x08", offsets, kinds)
    assert [row[0] for row in decoded_rows(result.columns)] == [rows[0][0], rows[0][0], rows[1][0]]
    assert result.rejects["truncated"] == 1
    assert result.rejected == 1


def info_with(seconds: int, nanos: int, length: int) -> bytes:
    """An official PacketInfo carrying exactly these timestamp fields and length."""
    message = official_message((0, False, bytes(range(16)), bytes(range(16, 32)), 1, 2, 6, 0))
    message.timestamp.seconds, message.timestamp.nanos = seconds, nanos
    message.length = length
    return message.SerializeToString()


@pytest.mark.parametrize(
    ("seconds", "nanos", "length", "reason"),
    [
        (253_402_300_800, 0, 60, "bad_timestamp"),  # year 10000: wrapped to 1816 before
        (2**62, 0, 60, "bad_timestamp"),  # wrapped to 1970 before
        (codec.MAX_TIMESTAMP_SECONDS + 1, 0, 60, "bad_timestamp"),  # past ClickHouse DateTime
        (-1, 999_999_999, 60, "bad_timestamp"),  # before the epoch
        (1_700_000_000, -1, 60, "bad_timestamp"),
        (1_700_000_000, 10**9, 60, "bad_timestamp"),
        (1_700_000_000, 0, 2**64 - 1, "bad_length"),  # wrapped the byte counters before
        (1_700_000_000, 0, codec.MAX_PACKET_LENGTH + 1, "bad_length"),
    ],
)
def test_values_that_cannot_be_true_are_rejected_by_reason(
    seconds: int, nanos: int, length: int, reason: str
) -> None:
    good = info_with(1_700_000_000, 5, 60)
    result = codec.decode_packet_infos([good, info_with(seconds, nanos, length), good])
    assert len(result.columns) == 2
    assert result.rejects == {r: int(r == reason) for r in codec.REJECT_REASONS}
    batch = codec.decode_packet_batch(
        b"".join(tag(1, 2) + _VarintBytes(len(m)) + m for m in (good, info_with(seconds, nanos, length)))
    )
    assert len(batch.columns) == 1 and batch.rejects[reason] == 1 and batch.rejected == 1


def test_the_bounds_themselves_are_accepted() -> None:
    messages = [
        info_with(0, 0, 0),
        info_with(codec.MAX_TIMESTAMP_SECONDS, 999_999_999, codec.MAX_PACKET_LENGTH),
    ]
    result = codec.decode_packet_infos(messages)
    assert result.rejected == 0
    assert result.columns.ts_ns.tolist() == [0, codec.MAX_TIMESTAMP_SECONDS * 10**9 + 999_999_999]
    assert result.columns.length.tolist() == [0, codec.MAX_PACKET_LENGTH]

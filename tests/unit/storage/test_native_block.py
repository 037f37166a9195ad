"""Native String columns: text and binary values (sketch_states.State) as ClickHouse's format defines
them: each value is its length as an unsigned LEB128 varint followed by its bytes."""

from __future__ import annotations

import pyarrow as pa

from netspectra.storage.native_block import encode_column


def varint_string(value: bytes) -> bytes:
    out = bytearray()
    length = len(value)
    while length >= 0x80:
        out.append(length & 0x7F | 0x80)
        length >>= 7
    out.append(length)
    return bytes(out) + value


def test_binary_values_short_and_long_are_length_prefixed_bytes() -> None:
    values = [b"", b"\x00\xff\x80", bytes(range(256)) * 3]  # the last one needs a two-byte varint
    encoded = encode_column("State", "String", pa.array(values, pa.binary()))
    assert encoded == b"".join(varint_string(value) for value in values)


def test_text_values_short_and_long_are_utf8_length_prefixed() -> None:
    values = ["", "per_src_ip", "é" * 200]
    encoded = encode_column("TaskName", "String", pa.array(values, pa.string()))
    assert encoded == b"".join(varint_string(value.encode()) for value in values)


def test_a_null_binary_value_is_the_empty_value() -> None:
    encoded = encode_column("State", "String", pa.array([b"ab", None], pa.binary()))
    assert encoded == varint_string(b"ab") + varint_string(b"")

"""Snapshot rows: address text equals Python's ``ipaddress``; columns equal a per-row Python build."""

from __future__ import annotations

import ipaddress
import itertools

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from netspectra.model.fields import KeyField
from netspectra.model.snapshot import FlowTable, HeavyHitter, HitterKind, SketchResult, Snapshot
from netspectra.storage.rows import addresses_arrow, as_arrow, as_list, snapshot_rows

MAPPED = bytes(10) + b"\xff\xff"


def truth(raw: bytes) -> str:
    """Independent text: ipaddress; IPv4-mapped rows are printed as the IPv4 address."""
    address = ipaddress.IPv6Address(raw)
    mapped = address.ipv4_mapped
    return str(mapped) if mapped is not None else str(address)


def matrix(addresses: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(addresses), np.uint8).reshape(-1, 16)


hextet = st.one_of(st.just(0), st.integers(0, 0xFFFF), st.sampled_from([1, 0xF, 0x10, 0xFFF, 0x1000]))
ipv6 = st.lists(hextet, min_size=8, max_size=8).map(
    lambda groups: b"".join(g.to_bytes(2, "big") for g in groups)
)
ipv4_mapped = st.binary(min_size=4, max_size=4).map(lambda four: MAPPED + four)
ipv4_compatible = st.binary(min_size=4, max_size=4).map(lambda four: bytes(12) + four)
any_address = st.one_of(ipv6, ipv4_mapped, ipv4_compatible, st.binary(min_size=16, max_size=16))


@settings(max_examples=300, deadline=None)
@given(st.lists(any_address, min_size=1, max_size=40))
def test_text_matches_ipaddress(addresses: list[bytes]) -> None:
    assert addresses_arrow(matrix(addresses)).to_pylist() == [truth(a) for a in addresses]


def test_every_zero_run_position_and_length() -> None:
    # All 256 patterns of zero / non-zero groups, with 1-, 2-, 3- and 4-digit non-zero groups.
    addresses = []
    for pattern in itertools.product((0, 1), repeat=8):
        for value in (0x1, 0xAB, 0xABC, 0xABCD):
            addresses.append(b"".join((value if keep else 0).to_bytes(2, "big") for keep in pattern))
    addresses += [
        bytes(16),
        bytes(15) + b"\x01",
        MAPPED + bytes(4),
        MAPPED + b"\xff" * 4,
        bytes(12) + b"\x01\x02\x03\x04",
    ]
    assert addresses_arrow(matrix(addresses)).to_pylist() == [truth(a) for a in addresses]


def test_empty_column() -> None:
    assert addresses_arrow(np.zeros((0, 16), np.uint8)).to_pylist() == []


def flow_table(task: str, keys: tuple[KeyField, ...], count: int, seed: int) -> FlowTable:
    rng = np.random.default_rng(seed)
    src = rng.integers(0, 256, (count, 16), dtype=np.uint8)
    src[: count // 2, :12] = np.frombuffer(MAPPED, np.uint8)
    dst = rng.integers(0, 256, (count, 16), dtype=np.uint8)
    return FlowTable(
        task,
        keys,
        src,
        dst,
        rng.integers(0, 65536, count).astype(np.uint16),
        rng.integers(0, 65536, count).astype(np.uint16),
        rng.integers(0, 256, count).astype(np.uint8),
        rng.integers(1, 2**40, count).astype(np.uint64),
        rng.integers(1, 2**50, count).astype(np.uint64),
        rng.integers(0, 4 * 10**18, count).astype(np.int64),
        rng.integers(0, 4 * 10**18, count).astype(np.int64),
    )


def test_snapshot_rows_equal_a_per_row_build() -> None:
    five = flow_table("five", tuple(KeyField), 50, 1)
    pair = flow_table("pair", (KeyField.SRC_IP, KeyField.DST_IP), 30, 2)
    hitter = HeavyHitter("10.0.0.1", 7, HitterKind.COUNT)
    snapshot = Snapshot(
        "exact", 1_700_000_000_500_000_000, 0, (five, pair), (SketchResult("cm", "count_min", (hitter,)),)
    )
    rows = snapshot_rows(snapshot, "e1")

    expected: dict[str, list[object]] = {name: [] for name in rows.flows}
    for table in (five, pair):
        keyed = set(table.key_fields)
        for i in range(len(table)):
            expected["Timestamp"].append(1_700_000_000)
            expected["TaskName"].append(table.task)
            expected["SrcIP"].append(truth(bytes(table.src_ip[i])) if KeyField.SRC_IP in keyed else None)
            expected["DstIP"].append(truth(bytes(table.dst_ip[i])) if KeyField.DST_IP in keyed else None)
            expected["SrcPort"].append(int(table.src_port[i]) if KeyField.SRC_PORT in keyed else None)
            expected["DstPort"].append(int(table.dst_port[i]) if KeyField.DST_PORT in keyed else None)
            expected["Protocol"].append(int(table.protocol[i]) if KeyField.PROTOCOL in keyed else None)
            expected["StartTime"].append(int(table.first_seen_ns[i]) // 10**9)
            expected["EndTime"].append(int(table.last_seen_ns[i]) // 10**9)
            expected["ByteCount"].append(int(table.bytes[i]))
            expected["PacketCount"].append(int(table.packets[i]))
            expected["EngineId"].append("e1")
    assert {name: as_list(column) for name, column in rows.flows.items()} == expected
    assert (rows.flow_count, rows.hitter_count) == (80, 1)
    assert {name: as_list(column) for name, column in rows.hitters.items()} == {
        "Timestamp": [1_700_000_000],
        "TaskName": ["cm"],
        "Flow": ["10.0.0.1"],
        "Value": [7],
        "Type": [int(HitterKind.COUNT)],
        "EngineId": ["e1"],
    }


def test_list_columns_from_older_spool_files_convert() -> None:
    assert as_arrow("SrcPort", [1, None, 65535]).equals(pa.array([1, None, 65535], pa.uint16()))
    assert as_list([1, None]) == [1, None]
    assert snapshot_rows(Snapshot("exact", 0, 0)).flow_count == 0


def test_times_outside_clickhouse_datetime_are_clamped_not_wrapped(caplog):
    from netspectra.storage.rows import _numeric

    column = _numeric("StartTime", np.array([-5, 0, 2**32 - 1, 2**32 + 7], np.int64))
    assert column.to_pylist() == [0, 0, 2**32 - 1, 2**32 - 1]
    assert "2 time(s) outside ClickHouse DateTime" in caplog.text

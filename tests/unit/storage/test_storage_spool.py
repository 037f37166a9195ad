"""The snapshot spool keeps FIFO order across memory and disk and survives a restart."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import numpy as np

from netspectra.storage.rows import SnapshotRows, addresses_text
from netspectra.storage.spool import SnapshotSpool


def rows(number: int) -> SnapshotRows:
    return SnapshotRows("exact", number, flows={"Timestamp": [number]})


async def drain(spool: SnapshotSpool) -> list[int]:
    out = []
    while (item := await spool.peek()) is not None:
        out.append(item.taken_at_ns)
        spool.pop()
    return out


async def test_fifo_across_memory_and_disk(tmp_path: Path) -> None:
    spool = SnapshotSpool(tmp_path / "q", memory_limit=2)
    for number in range(5):
        await spool.put(rows(number))
    # every accepted snapshot is on disk (issue 10); memory only caches the first memory_limit
    assert (len(spool), spool.in_memory, len(list((tmp_path / "q").glob("*.snapshot")))) == (5, 2, 5)
    assert await drain(spool) == [0, 1, 2, 3, 4]
    assert list((tmp_path / "q").glob("*.snapshot")) == []


async def test_persist_then_reopen_keeps_order_and_appends_after(tmp_path: Path) -> None:
    spool = SnapshotSpool(tmp_path / "q", memory_limit=3)
    for number in range(4):
        await spool.put(rows(number))
    await spool.persist()
    spool.close()
    reopened = SnapshotSpool(tmp_path / "q", memory_limit=3)
    await reopened.put(rows(99))
    assert await drain(reopened) == [0, 1, 2, 3, 99]


def test_address_text_matches_ipaddress() -> None:
    texts = ["10.0.0.1", "255.255.255.255", "0.0.0.0", "2001:db8::1", "::1", "fe80::1:2"]

    def column(text: str) -> bytes:
        packed = ipaddress.ip_address(text).packed
        return packed if ":" in text else bytes(10) + b"\xff\xff" + packed

    raw = np.array(
        [
            list(
                (bytes(10) + b"\xff\xff" + ipaddress.ip_address(t).packed)
                if "." in t
                else ipaddress.ip_address(t).packed
            )
            for t in texts
        ],
        np.uint8,
    )
    assert addresses_text(raw) == [str(ipaddress.ip_address(t)) for t in texts]
    assert addresses_text(raw[:3]) == texts[:3]

"""Live capture on lo: the probe's sources count exactly the UDP datagrams the test sends to 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

import pytest

from netspectra.config.models import ProbeConfig
from netspectra.errors import CaptureError
from netspectra.probe.sources import open_source

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root or CAP_NET_RAW (setcap)"),
]


async def count_sent(kind: str, sent: int, port: int) -> tuple[int, dict[str, int]]:
    extra = {"bpf_filter": f"udp port {port}"} if kind == "dumpcap" else {}
    source = open_source(ProbeConfig(source=kind, iface="lo", **extra))  # type: ignore[arg-type]
    got = 0

    async def consume() -> None:
        nonlocal got
        async for batch in source.batches():
            got += int(((batch.dst_port == port) & (batch.protocol == 17)).sum())
            if got >= sent:
                return

    task = asyncio.create_task(consume())
    await asyncio.sleep(1.0 if kind == "dumpcap" else 0.2)  # dumpcap needs a moment to start
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for i in range(sent):
            sender.sendto(i.to_bytes(4, "big"), ("127.0.0.1", port))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(task, 10)
    await asyncio.sleep(0.3)  # anything extra would show up now
    await source.close()
    return got, source.stats()


@pytest.mark.parametrize("kind", ["afpacket", "dumpcap"])
async def test_live_source_counts_packets_sent_to_loopback(kind: str) -> None:
    got, stats = await count_sent(kind, 5000, 39_000 + (kind == "dumpcap"))
    assert got == 5000
    assert stats.get("kernel_drops", 0) == 0
    assert stats.get("dumpcap_dropped", 0) == 0


def test_missing_interface_is_a_clear_error() -> None:
    with pytest.raises(CaptureError, match=r"does not exist; available: .*lo"):
        open_source(ProbeConfig(source="afpacket", iface="nosuchif0"))
    with pytest.raises(CaptureError, match="dumpcap"):
        open_source(ProbeConfig(source="afpacket", iface="lo", bpf_filter="tcp"))

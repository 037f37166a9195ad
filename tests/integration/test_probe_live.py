"""Live capture on lo: the probe's sources count exactly the UDP datagrams the test sends to 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket

import hypothesis  # noqa: F401  (see below)
import pytest

from netspectra.config.models import ProbeConfig
from netspectra.errors import CaptureError
from netspectra.probe.sources import open_source

# After the pyshark test, CPython 3.11.7's ast.parse raised "SystemError: AST constructor recursion
# depth mismatch" when pytest assertion-rewrote hypothesis, first imported in its session summary
# (a CPython bug, not ours); importing hypothesis up front keeps a run of this file alone clean.

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


async def test_afpacket_fanout_two_sockets_split_by_flow() -> None:
    """PACKET_FANOUT (hash): two sockets in one group share lo; every flow lands whole on one of them."""
    port, flows, per_flow = 39_010, 64, 40
    sources = [
        open_source(ProbeConfig(source="afpacket", iface="lo", fanout_group=4242 + os.getpid() % 1000))
        for _ in range(2)
    ]
    seen: list[dict[int, int]] = [{}, {}]

    async def consume(index: int) -> None:
        async for batch in sources[index].batches():
            mine = (batch.dst_port == port) & (batch.protocol == 17)
            for sport in batch.src_port[mine].tolist():
                seen[index][sport] = seen[index].get(sport, 0) + 1

    tasks = [asyncio.create_task(consume(i)) for i in range(2)]
    await asyncio.sleep(0.2)
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(flows)]
    try:
        for sender in senders:
            sender.bind(("127.0.0.1", 0))
        for _ in range(per_flow):
            for sender in senders:
                sender.sendto(b"x", ("127.0.0.1", port))
        expected = {sender.getsockname()[1]: per_flow for sender in senders}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while sum(map(len, seen)) < flows and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
    finally:
        for sender in senders:
            sender.close()
        for source in sources:
            await source.close()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert not set(seen[0]) & set(seen[1]), "a flow was split across the fanout group"
    assert {**seen[0], **seen[1]} == expected
    assert seen[0] and seen[1], f"one socket got every flow: {len(seen[0])} / {len(seen[1])}"
    for source in sources:
        assert source.stats()["kernel_drops"] == 0


@pytest.mark.skipif(
    shutil.which("tshark") is None, reason="the pyshark source needs tshark (apt-get install tshark)"
)
async def test_pyshark_source_applies_the_display_filter() -> None:
    """pyshark (tshark dissectors): only datagrams matching the display filter arrive, all of them."""
    ready_port, wanted_port, other_port, sent = 39_020, 39_021, 39_022, 150
    source = open_source(
        ProbeConfig(
            source="pyshark",
            iface="lo",
            bpf_filter="udp",
            display_filter=f"udp.dstport == {ready_port} || udp.dstport == {wanted_port}",
        )
    )
    ports: list[int] = []

    async def consume() -> None:
        async for batch in source.batches():
            ports.extend(batch.dst_port[batch.protocol == 17].tolist())

    task = asyncio.create_task(consume())
    loop = asyncio.get_running_loop()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            deadline = loop.time() + 20
            while ready_port not in ports:  # tshark takes a moment to start capturing
                assert loop.time() < deadline, "pyshark captured nothing within 20 s"
                sender.sendto(b"ready", ("127.0.0.1", ready_port))
                await asyncio.sleep(0.2)
            for i in range(sent):
                sender.sendto(i.to_bytes(4, "big"), ("127.0.0.1", other_port))
                sender.sendto(i.to_bytes(4, "big"), ("127.0.0.1", wanted_port))
            deadline = loop.time() + 20
            while ports.count(wanted_port) < sent and loop.time() < deadline:
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # anything extra would show up now
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await source.close()
    assert ports.count(wanted_port) == sent
    assert other_port not in ports
    assert set(ports) == {ready_port, wanted_port}

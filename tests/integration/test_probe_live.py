"""Live capture on lo: the probe's sources count exactly the UDP datagrams the test sends to 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from collections.abc import Iterator

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


@contextlib.contextmanager
def udp_ports(count: int) -> Iterator[list[int]]:
    """``count`` UDP ports of loopback that no other process gets while the test holds them.

    Each is bound here (the kernel picks a free one), so two suites on one machine, or a test run
    beside one, never count each other's datagrams, as fixed port numbers did. A capture on lo
    sees every datagram sent to them whether or not the holding socket reads it.
    """
    holders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    try:
        for holder in holders:
            holder.bind(("127.0.0.1", 0))
        yield [holder.getsockname()[1] for holder in holders]
    finally:
        for holder in holders:
            holder.close()


async def marked(sender: socket.socket, marker: int, seen, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Send a datagram to ``marker`` every 0.1 s until ``seen()`` says a new one was captured.

    lo delivers a socket's datagrams to a capture in the order sent, so a marker seen after the
    data means every data datagram that will ever be captured has been: a condition, not a sleep.
    It also tells when a source has started capturing (dumpcap takes a moment). Each use needs a
    port of its own: markers still in flight from an earlier use would count as seen.
    """
    before = seen()
    deadline = asyncio.get_running_loop().time() + timeout
    while seen() == before:
        assert asyncio.get_running_loop().time() < deadline, f"no marker captured within {timeout} s"
        sender.sendto(b"marker", ("127.0.0.1", marker))
        await asyncio.sleep(0.1)


async def count_sent(kind: str, sent: int) -> tuple[int, dict[str, int]]:
    with udp_ports(3) as (port, started, ended):
        return await _count_sent(kind, sent, port, started, ended)


async def _count_sent(
    kind: str, sent: int, port: int, started: int, ended: int
) -> tuple[int, dict[str, int]]:
    extra = {"bpf_filter": f"udp port {port} or udp port {started} or udp port {ended}"}
    source = open_source(ProbeConfig(source=kind, iface="lo", **extra if kind == "dumpcap" else {}))  # type: ignore[arg-type]
    counts = {port: 0, started: 0, ended: 0}

    async def consume() -> None:
        async for batch in source.batches():
            udp = batch.protocol == 17
            for number in counts:
                counts[number] += int(((batch.dst_port == number) & udp).sum())

    task = asyncio.create_task(consume())
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            await marked(sender, started, lambda: counts[started])  # capturing
            for i in range(sent):
                sender.sendto(i.to_bytes(4, "big"), ("127.0.0.1", port))
            await marked(sender, ended, lambda: counts[ended])  # everything sent is in
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await source.close()
    return counts[port], source.stats()


@pytest.mark.parametrize("kind", ["afpacket", "dumpcap"])
async def test_live_source_counts_packets_sent_to_loopback(kind: str) -> None:
    got, stats = await count_sent(kind, 5000)
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
    with udp_ports(3) as (port, started, ended):
        await _fanout_splits_by_flow(port, started, ended)


async def _fanout_splits_by_flow(port: int, started: int, ended: int) -> None:
    flows, per_flow = 64, 40
    sources = [
        open_source(ProbeConfig(source="afpacket", iface="lo", fanout_group=4242 + os.getpid() % 1000))
        for _ in range(2)
    ]
    seen: list[dict[int, int]] = [{}, {}]
    markers = [{started: 0, ended: 0}, {started: 0, ended: 0}]

    async def consume(index: int) -> None:
        async for batch in sources[index].batches():
            udp = batch.protocol == 17
            mine = (batch.dst_port == port) & udp
            for sport in batch.src_port[mine].tolist():
                seen[index][sport] = seen[index].get(sport, 0) + 1
            for number in (started, ended):
                markers[index][number] += int(((batch.dst_port == number) & udp).sum())

    async def marked(number: int) -> None:
        """Markers from every flow until both members saw one (the hash spreads the 64 flows).

        Each member receives in the order lo carried the datagrams, so a member that saw an end
        marker holds every data datagram the hash gave it.
        """
        deadline = asyncio.get_running_loop().time() + 20
        while not all(counts[number] for counts in markers):
            assert asyncio.get_running_loop().time() < deadline, f"markers to {number} not captured"
            for sender in senders:
                sender.sendto(b"m", ("127.0.0.1", number))
            await asyncio.sleep(0.1)

    tasks = [asyncio.create_task(consume(i)) for i in range(2)]
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(flows)]
    try:
        for sender in senders:
            sender.bind(("127.0.0.1", 0))
        await marked(started)  # both members capture
        for _ in range(per_flow):
            for sender in senders:
                sender.sendto(b"x", ("127.0.0.1", port))
        expected = {sender.getsockname()[1]: per_flow for sender in senders}
        await marked(ended)  # everything sent is in
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
    with udp_ports(4) as (ready_port, wanted_port, other_port, end_port):
        await _display_filter_passes_only_wanted(ready_port, wanted_port, other_port, end_port)


async def _display_filter_passes_only_wanted(
    ready_port: int, wanted_port: int, other_port: int, end_port: int
) -> None:
    sent = 150
    source = open_source(
        ProbeConfig(
            source="pyshark",
            iface="lo",
            bpf_filter="udp",
            display_filter=" || ".join(f"udp.dstport == {n}" for n in (ready_port, wanted_port, end_port)),
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
            # a ready datagram after the others: once it is in, so is everything sent before it
            await marked(sender, end_port, lambda: ports.count(end_port))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await source.close()
    assert ports.count(wanted_port) == sent
    assert other_port not in ports
    assert set(ports) == {ready_port, wanted_port, end_port}


@pytest.mark.parametrize("kind", ["afpacket", "dumpcap"])
async def test_live_source_with_compat_go_decodes_as_gopacket(kind: str) -> None:
    """``probe.compat: go`` on a live source: Ethernet frames injected on lo through a packet socket,
    IPv4 first fragments of UDP (gopacket: ports 0) and 0x9100-tagged frames (gopacket: no decoder,
    so skipped as go_undecoded, counted)."""
    with udp_ports(3) as (port, started, ended):
        await _compat_go_on_lo(kind, port, started, ended)


async def _compat_go_on_lo(kind: str, port: int, started: int, ended: int) -> None:
    import numpy as np
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Dot1Q, Ether

    # addresses of this run only (from a port it holds): another suite's frames never match them
    fragment_src, tagged_src = (f"10.{tag}.{port >> 8}.{port & 255}" for tag in (77, 78))
    frames = 50
    extra = {
        "bpf_filter": f"udp port {started} or udp port {ended} or host {fragment_src} or ether proto 0x9100"
    }
    source = open_source(
        ProbeConfig(source=kind, iface="lo", compat="go", **extra if kind == "dumpcap" else {})
    )  # type: ignore[arg-type]
    mapped = {
        name: np.frombuffer(bytes(10) + b"\xff\xff" + socket.inet_aton(address), np.uint8)
        for name, address in (("fragment", fragment_src), ("tagged", tagged_src))
    }
    counts = {started: 0, ended: 0, "fragment": 0, "fragment_ports": 0, "tagged": 0}

    async def consume() -> None:
        async for batch in source.batches():
            for number in (started, ended):
                counts[number] += int(((batch.dst_port == number) & (batch.protocol == 17)).sum())
            for name in ("fragment", "tagged"):
                rows = (batch.src_ip == mapped[name]).all(axis=1)
                counts[name] += int(rows.sum())
                if name == "fragment":
                    counts["fragment_ports"] += int((batch.dst_port[rows] != 0).sum())

    def undecoded() -> int:
        if kind == "dumpcap":
            return source.parser.skips.get("go_undecoded", 0)  # type: ignore[attr-defined]
        return source.stats().get("skipped_go_undecoded", 0)

    fragment = bytes(
        Ether() / IP(src=fragment_src, dst="127.0.0.1", flags="MF") / UDP(sport=1111, dport=port)
    )
    tagged = bytes(Ether(type=0x9100) / Dot1Q(vlan=5) / IP(src=tagged_src, dst="127.0.0.1") / UDP(dport=port))
    task = asyncio.create_task(consume())
    try:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
            socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as injector,
        ):
            injector.bind(("lo", 0))
            await marked(sender, started, lambda: counts[started])  # capturing
            for _ in range(frames):
                injector.send(fragment)
                injector.send(tagged)
            await marked(sender, ended, lambda: counts[ended])
            deadline = asyncio.get_running_loop().time() + 20
            while counts["fragment"] < frames or undecoded() < frames:  # a condition, not a sleep
                assert asyncio.get_running_loop().time() < deadline, (counts, undecoded())
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await source.close()
    assert counts["fragment"] == frames and counts["fragment_ports"] == 0  # gopacket: ports 0
    # gopacket: dropped; we count why (at least ours: a suite beside this one may inject some too)
    assert counts["tagged"] == 0 and undecoded() >= frames

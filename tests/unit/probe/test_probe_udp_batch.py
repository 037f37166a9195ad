"""The collector's batch receiver over real loopback sockets: what was sent is the truth.

Both receive paths (one recvmmsg call per wake-up, and the portable recvmsg_into loop) must give
the same batch: every payload byte for byte with its sender's address, in order. Kernel drops are
provoked deterministically: loopback delivery happens inside ``sendto``, so datagrams sent to a
socket nobody reads are either queued or dropped by then, and received + dropped equals sent.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

import pytest

from netspectra.capture.flows.datagrams import mapped_address
from netspectra.config.models import ProbeConfig
from netspectra.probe.sources.flow_export import FlowExportSource
from netspectra.probe.sources.udp_batch import (
    _RECVMMSG,
    SLOT,
    BatchReceiver,
    proc_udp_drops,
    set_receive_buffer,
)

PATHS = [pytest.param(True, id="recvmmsg"), pytest.param(False, id="recvmsg-loop")]
FAMILIES = [
    pytest.param(socket.AF_INET, "127.0.0.1", "127.0.0.3", id="ipv4"),
    pytest.param(socket.AF_INET6, "::1", "::1", id="ipv6"),
]


def _bound(family: int, host: str) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    return sock


def _drain(receiver: BatchReceiver) -> list[tuple[bytes, bytes]]:
    got: list[tuple[bytes, bytes]] = []
    while True:
        receiver.fill()
        batch = receiver.take()
        if batch is None:
            return got
        got += [(batch.payload(i), batch.exporter[i].tobytes()) for i in range(len(batch))]


@pytest.mark.parametrize("use_recvmmsg", PATHS)
@pytest.mark.parametrize(("family", "host", "sender_host"), FAMILIES)
def test_a_batch_holds_every_datagram_byte_for_byte_with_its_sender(
    use_recvmmsg: bool, family: int, host: str, sender_host: str
) -> None:
    if use_recvmmsg and _RECVMMSG is None:
        pytest.skip("recvmmsg is Linux-only")
    sock = _bound(family, host)
    receiver = BatchReceiver(sock, batch=8, use_recvmmsg=use_recvmmsg)
    assert receiver.batched is use_recvmmsg
    sender = _bound(family, sender_host)
    sent = [bytes([k]) * (1 + 37 * k) for k in range(19)] + [b"x" * SLOT]  # a full slot fits
    for payload in sent:
        sender.sendto(payload, sock.getsockname()[:2])

    assert receiver.fill() == 8
    assert receiver.full and receiver.fill() == 0  # a full buffer takes nothing more
    first = receiver.take()
    assert first is not None
    first_payloads = [first.payload(i) for i in range(len(first))]
    rest = _drain(receiver)  # later fills go to a new buffer: the first batch is untouched

    assert first_payloads == sent[:8]
    assert [payload for payload, _ in rest] == sent[8:]
    assert {exporter for _, exporter in rest} == {mapped_address(sender_host)}
    assert first.exporter.tobytes() == mapped_address(sender_host) * 8
    assert receiver.datagrams == len(sent)
    receiver.close()
    sender.close()


@pytest.mark.parametrize("use_recvmmsg", PATHS)
def test_a_datagram_longer_than_a_slot_is_counted_and_skipped(use_recvmmsg: bool) -> None:
    if use_recvmmsg and _RECVMMSG is None:
        pytest.skip("recvmmsg is Linux-only")
    sock = _bound(socket.AF_INET, "127.0.0.1")
    receiver = BatchReceiver(sock, batch=8, use_recvmmsg=use_recvmmsg)
    sender = _bound(socket.AF_INET, "127.0.0.1")
    for payload in (b"before", b"y" * (SLOT + 1), b"after"):
        sender.sendto(payload, sock.getsockname())
    assert [payload for payload, _ in _drain(receiver)] == [b"before", b"after"]
    assert receiver.oversize == 1
    receiver.close()
    sender.close()


@pytest.mark.parametrize("use_recvmmsg", PATHS)
def test_what_the_kernel_drops_on_a_full_buffer_is_counted(use_recvmmsg: bool) -> None:
    if use_recvmmsg and _RECVMMSG is None:
        pytest.skip("recvmmsg is Linux-only")
    sock = _bound(socket.AF_INET, "127.0.0.1")
    set_receive_buffer(sock, 4096)  # a few datagrams: the rest is dropped by the kernel
    receiver = BatchReceiver(sock, batch=64, use_recvmmsg=use_recvmmsg)
    sender = _bound(socket.AF_INET, "127.0.0.1")
    sent = 300
    for k in range(sent):
        sender.sendto(struct.pack("!I", k) + bytes(700), sock.getsockname())

    kernel = proc_udp_drops({receiver.inode})
    received = _drain(receiver)
    assert kernel, "/proc/net/udp lists the socket"
    assert 0 < len(received) < sent
    assert len(received) + receiver.kernel_drops() == sent
    assert receiver.kernel_drops() == kernel[receiver.inode]
    if use_recvmmsg:  # SO_RXQ_OVFL rides on the next datagram received after the drops
        sender.sendto(b"one more", sock.getsockname())
        receiver.fill()
        assert receiver.kernel_drops_seen == sent - len(received)
    receiver.close()
    assert receiver.kernel_drops() == sent - len(received)  # still readable once closed
    sender.close()


def test_the_receive_buffer_asked_is_granted_or_the_cap_is_named(caplog: pytest.LogCaptureFixture) -> None:
    sock = _bound(socket.AF_INET, "127.0.0.1")
    with open("/proc/sys/net/core/rmem_max") as cap_file:
        cap = int(cap_file.read())
    wanted = cap * 4  # past the cap: granted only to a process that may force it (CAP_NET_ADMIN)
    with caplog.at_level(logging.WARNING, logger="netspectra.probe.sources.udp_batch"):
        granted = set_receive_buffer(sock, wanted)
    if granted >= wanted:
        assert not caplog.records
    else:
        assert granted <= cap
        assert "net.core.rmem_max" in caplog.text and str(wanted) in caplog.text
    sock.close()


async def test_the_collector_counts_and_logs_kernel_drops(caplog: pytest.LogCaptureFixture) -> None:
    """A collector that cannot keep up (here: not reading at all) sees its loss in its own stats."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    config = ProbeConfig.model_validate(
        {"source": "netflow", "listen": [f"127.0.0.1:{port}"], "flows": {"receive_buffer": 4096}}
    )
    source = FlowExportSource(config)
    await source.start()
    sender = _bound(socket.AF_INET, "127.0.0.1")
    header = struct.pack("!HHIIII", 5, 0, 0, 0, 0, 0)  # v5 with no records: decodes to nothing
    sent = 200
    for _ in range(sent):  # no await in between: the event loop never reads meanwhile
        sender.sendto(header + bytes(600), source.bound[0])
    stats = source.stats()
    assert stats["kernel_dropped_datagrams"] > 0

    batches = source.batches()
    with caplog.at_level(logging.WARNING, logger="netspectra.probe.sources.flow_export"):
        reading = asyncio.ensure_future(anext(batches, None))  # nothing decodes to records: it reads on
        received = 0
        for _ in range(1000):  # the condition, polled for at most ~10 s
            received = source.stats()["datagrams"]
            if received + stats["kernel_dropped_datagrams"] >= sent and "dropped" in caplog.text:
                break
            await asyncio.sleep(0.01)
        reading.cancel()
    assert received + source.stats()["kernel_dropped_datagrams"] == sent
    assert f"{stats['kernel_dropped_datagrams']} in all" in caplog.text
    await source.close()
    sender.close()

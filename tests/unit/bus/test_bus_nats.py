"""NatsBus against a real nats-server: queue groups, auth, reconnect, slow-consumer counting."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from netspectra.bus.nats import NatsBus, connect_options, redact_url
from netspectra.config.models import NatsAuth
from netspectra.errors import BusError
from tests.fixtures.nats import NatsServer


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def test_redact_url_hides_user_info() -> None:
    assert redact_url("nats://alice:s3cret@h1:4222,tls://tok@h2:4443") == "nats://h1:4222,tls://h2:4443"


def test_secrets_come_from_the_settings_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # the environment is read once, by the config loader (NETSPECTRA_NATS_*); the bus ignores it
    monkeypatch.setenv("NATS_USER", "from-env")
    monkeypatch.setenv("NATS_TOKEN", "from-env")
    assert connect_options(NatsAuth()) == {}
    assert connect_options(NatsAuth(user="u", password="p")) == {"user": "u", "password": "p"}
    assert connect_options(NatsAuth(token="from-config")) == {"token": "from-config"}
    with pytest.raises(BusError, match="creds_file"):
        connect_options(NatsAuth(creds_file="/nonexistent.creds"))
    with pytest.raises(BusError, match="tls_key"):
        connect_options(NatsAuth(tls_ca="/etc/ssl/certs/ca-certificates.crt", tls_cert="/x.pem"))


async def test_queue_group_splits_and_plain_subscriber_sees_all(nats_server: NatsServer) -> None:
    bus = NatsBus(nats_server.url)
    await bus.connect()
    group: list[list[int]] = [[], []]
    everything: list[int] = []
    for index in range(2):
        await bus.subscribe("t.s", lambda m, i=index: group[i].append(int(m.data)), queue="q")
    await bus.subscribe("t.s", lambda m: everything.append(int(m.data)))
    for i in range(1000):
        await bus.publish("t.s", str(i).encode())
    await bus.flush()
    await wait_for(lambda: len(everything) == 1000 and len(group[0]) + len(group[1]) == 1000)
    assert everything == list(range(1000))
    assert sorted(group[0] + group[1]) == list(range(1000))
    await bus.close()
    await bus.close()  # idempotent


async def test_user_password_and_token_auth(nats_server_factory: Callable[..., NatsServer]) -> None:
    server = nats_server_factory("--user", "alice", "--pass", "s3cret")
    good = NatsBus(server.url, NatsAuth(user="alice", password="s3cret"))
    await good.connect()
    await good.close()
    with pytest.raises(BusError, match="cannot connect") as caught:
        await NatsBus(server.url, NatsAuth(user="alice", password="wrong")).connect()
    assert "wrong" not in str(caught.value)
    token_server = nats_server_factory("--auth", "tok-123")
    bus = NatsBus(token_server.url, NatsAuth(token="tok-123"))
    await bus.connect()
    await bus.close()


async def test_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(BusError, match="Start nats-server"):
        await NatsBus("nats://127.0.0.1:1", connect_timeout_s=0.5).connect()


async def test_reconnects_after_server_restart_and_counts_it(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="netspectra.bus.nats")
    bus = NatsBus(nats_server.url, reconnect_wait_s=0.1)
    received: list[bytes] = []
    await bus.subscribe("r", lambda m: received.append(m.data))
    await bus.publish("r", b"before")
    # a flush does not order the server's PONG after the echo of our own message (seen under
    # load): wait for the message itself, or the kill may take it away
    await wait_for(lambda: received == [b"before"], timeout=30)
    nats_server.kill()
    await wait_for(lambda: bus.stats.disconnects == 1, timeout=30)
    await asyncio.get_running_loop().run_in_executor(None, nats_server.restart)
    # reported once nats-py has replayed the subscription and flushed it to the new server
    await wait_for(lambda: bus.stats.reconnects == 1, timeout=30)
    await bus.publish("r", b"after")
    await wait_for(lambda: received == [b"before", b"after"], timeout=30)
    assert "Disconnected from NATS" in caplog.text
    assert "Reconnected to NATS" in caplog.text
    await bus.close()


async def test_slow_consumer_drops_are_counted_exactly(nats_server: NatsServer) -> None:
    bus = NatsBus(nats_server.url)
    publisher = NatsBus(nats_server.url)
    await publisher.connect()
    received: list[int] = []

    def slow_handler(message: Any) -> None:
        if not received:
            time.sleep(0.2)  # block the loop: nats-py's reader then overfills the pending queue
        received.append(int(message.data))

    subscription = await bus.subscribe("slow", slow_handler, pending_msgs_limit=50)
    await bus.flush()  # the server has the subscription before anything is published (no silent loss)
    for i in range(300):
        await publisher.publish("slow", str(i).encode())
    await publisher.flush()
    await wait_for(lambda: len(received) + bus.stats.dropped == 300, timeout=30)
    await subscription.drain()  # whatever nats-py still held is handed over before this returns
    assert len(received) + bus.stats.dropped == 300
    assert received == sorted(set(received))
    assert bus.stats.dropped > 0
    await bus.close()
    await publisher.close()


async def test_a_flush_goes_out_after_the_commands_queued_before_it(nats_server: NatsServer) -> None:
    """The engine flushes after subscribing and then says it is ready: the server must have the SUB
    by then. nats-py's own ``flush()`` wrote its PING to the socket ahead of the SUB still in its
    command buffer; under load a publisher then beat the SUB to the server and every message was
    dropped (the slow-consumer test above lost all 300, ~1 run in 30). The bytes the client sends
    are read here through a recording proxy: deterministic, unlike the race they decide."""
    sent = bytearray()
    host, port = nats_server.url.removeprefix("nats://").rsplit(":", 1)
    relayed: list[asyncio.Task[Any]] = []

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bool) -> None:
        try:
            while data := await reader.read(65536):
                if record:
                    sent.extend(data)
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def proxy_one(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(host, int(port))
        both = asyncio.gather(
            relay(client_reader, server_writer, True), relay(server_reader, client_writer, False)
        )
        relayed.append(both)  # type: ignore[arg-type]
        await both

    proxy = await asyncio.start_server(proxy_one, "127.0.0.1", 0)
    proxy_port = proxy.sockets[0].getsockname()[1]
    bus = NatsBus(f"nats://127.0.0.1:{proxy_port}")
    try:
        subscription = await bus.subscribe("ordered", lambda message: None)
        await bus.flush()
        stream = bytes(sent)
        subscribed = stream.index(b"SUB ordered ")
        assert stream.count(b"PING\r\n") == 2, stream  # the connect's, then the flush's
        assert stream.rindex(b"PING\r\n") > subscribed, stream
        # nats-py's drain queues an UNSUB and flushes: its PING must follow the UNSUB too, or the
        # server goes on routing to a subscription the client has dropped
        await subscription.drain()
        stream = bytes(sent)
        assert stream.count(b"PING\r\n") == 3, stream
        assert stream.rindex(b"PING\r\n") > stream.index(b"UNSUB "), stream
    finally:
        await bus.close()
        await asyncio.wait_for(asyncio.gather(*relayed), timeout=10)  # both sides closed
        proxy.close()
        await proxy.wait_closed()


def test_pub_frames_equal_nats_py_pub_commands() -> None:
    """Our bulk PUB lines are byte for byte what nats-py's own ``pub_cmd`` writes per message."""
    import numpy as np
    from nats.protocol.command import pub_cmd

    from netspectra.bus.nats import pub_frames

    payloads = [b"", b"x", bytes(range(9)), b"\r\n" * 50, bytes(1234)]
    data = b"".join(payloads)
    ends = np.cumsum([len(p) for p in payloads]).astype(np.int64)
    starts = ends - np.array([len(p) for p in payloads], np.int64)
    frames = pub_frames(b"gons.packets.raw", np.frombuffer(data, np.uint8), starts, ends)
    assert frames == b"".join(pub_cmd("gons.packets.raw", "", p) for p in payloads)


@pytest.mark.parametrize("chunk", [3, 8192])
async def test_publish_many_delivers_each_message_in_order(
    nats_server: NatsServer, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    import netspectra.bus.nats as bus_module

    monkeypatch.setattr(bus_module, "_FRAME_CHUNK", chunk)
    payloads = [f"message {i}".encode() * (1 + i % 4) for i in range(1000)]
    data = b"".join(payloads)
    ends = np.cumsum([len(p) for p in payloads]).astype(np.int64)
    starts = ends - np.array([len(p) for p in payloads], np.int64)
    publisher, subscriber = NatsBus(nats_server.url), NatsBus(nats_server.url)
    got: list[bytes] = []
    await subscriber.subscribe("bulk", lambda message: got.append(message.data))
    await subscriber.flush()
    await publisher.connect()
    assert await publisher.publish_many("bulk", data, starts, ends) == len(payloads)
    await publisher.flush()
    await wait_for(lambda: len(got) == len(payloads))
    await publisher.close()
    await subscriber.close()
    assert got == payloads


async def test_subscribe_payloads_direct_and_with_headers(nats_server: NatsServer) -> None:
    """Direct payload delivery keeps order and queue groups; messages with headers still arrive."""
    publisher, first, second = NatsBus(nats_server.url), NatsBus(nats_server.url), NatsBus(nats_server.url)
    got: list[list[bytes]] = [[], []]
    subscriptions = [
        await bus.subscribe_payloads("direct", sink.append, queue="q")
        for bus, sink in ((first, got[0]), (second, got[1]))
    ]
    await first.flush()
    await second.flush()
    await publisher.connect()
    sent = [str(i).encode() for i in range(2000)]
    for payload in sent[:-1]:
        await publisher.publish("direct", payload)
    await publisher.publish("direct", sent[-1], headers={"probe": "x"})
    await publisher.flush()
    await wait_for(lambda: len(got[0]) + len(got[1]) == len(sent))
    assert got[0] and got[1]
    assert sorted(got[0] + got[1], key=int) == sent
    for received in got:  # each member sees its share in publish order
        assert received == sorted(received, key=int)
    for subscription in subscriptions:
        await subscription.drain()
    await publisher.publish("direct", b"after drain")
    await publisher.flush()  # the server has routed it (to nobody, if the drains unsubscribed)
    # a PONG on each member's connection follows anything the server routed to it before
    await first.flush()
    await second.flush()
    assert len(got[0]) + len(got[1]) == len(sent)
    for bus in (publisher, first, second):
        await bus.close()

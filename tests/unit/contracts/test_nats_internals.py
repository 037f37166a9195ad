"""nats-py's private surface used by netspectra/bus/nats_internals.py, against a real nats-server."""

from __future__ import annotations

import asyncio
import inspect

import numpy as np
from nats.aio.client import Client

from netspectra.bus import nats_internals
from netspectra.bus.nats import RECONNECT_BUFFER_BYTES, pub_frames
from tests.fixtures.nats import NatsServer
from tests.unit.contracts.contract import Contract

NATS = Contract("nats-py", "netspectra/bus/nats_internals.py")


def test_version_is_within_the_pin() -> None:
    NATS.check(NATS.version.split(".")[0] == "2", "the code was written for nats-py 2.x")


def test_private_methods_have_the_expected_signatures() -> None:
    NATS.parameters(Client, "_process_msg", ["self", "sid", "subject", "reply", "data", "headers"])
    NATS.check(inspect.iscoroutinefunction(Client._process_msg), "Client._process_msg is no longer async")
    NATS.parameters(Client, "_send_command", ["self", "cmd"])
    NATS.parameters(Client, "_flush_pending", ["self", "force_flush"])  # write_queued waits on it
    NATS.parameters(Client, "flush", ["self", "timeout"])  # DirectClient.flush overrides it
    NATS.check(nats_internals.DIRECT_DELIVERY, "Client._process_msg is gone (direct delivery disabled)")
    NATS.check(nats_internals.FRAME_WRITES, "Client._send_command/_flush_pending are gone")


def test_private_state_exists_on_a_fresh_client() -> None:
    client = Client()
    NATS.check(
        getattr(client, "_max_pending_size", None) == 0, "Client._max_pending_size is not set by __init__"
    )
    NATS.check(hasattr(client, "_flush_queue"), "Client._flush_queue is not set by __init__")
    NATS.check(client.pending_data_size == 0, "Client.pending_data_size (public) is not 0 on a fresh client")
    NATS.check(isinstance(client.stats, dict) and "out_msgs" in client.stats, "Client.stats lacks 'out_msgs'")


async def test_direct_delivery_and_frame_writes_round_trip(nats_server: NatsServer) -> None:
    """Frames written through the command buffer arrive, in order, at a sink keyed by the sid."""
    client = nats_internals.DirectClient()
    await client.connect(servers=[nats_server.url], pending_size=RECONNECT_BUFFER_BYTES)
    try:
        NATS.check(
            client._max_pending_size == RECONNECT_BUFFER_BYTES, "connect no longer sets _max_pending_size"
        )
        NATS.check(nats_internals.reconnect_buffer_fits(client, 1), "reconnect_buffer_fits refuses 1 byte")
        NATS.check(
            not nats_internals.reconnect_buffer_fits(client, RECONNECT_BUFFER_BYTES + 1),
            "reconnect_buffer_fits accepts more than pending_size",
        )
        got: list[bytes] = []
        arrived = asyncio.Event()
        payloads = [f"payload-{i}".encode() for i in range(50)]

        def sink(payload: bytes) -> None:
            got.append(payload)
            if len(got) == len(payloads):
                arrived.set()

        subscription = await client.subscribe("contract.direct", cb=_never_called)
        sid = nats_internals.subscription_sid(subscription)
        NATS.check(isinstance(sid, int) and sid > 0, f"Subscription._id is {sid!r}, not a positive sid")
        client.payload_sinks[sid] = sink
        await client.flush()
        data = b"".join(payloads)
        ends = np.cumsum([len(p) for p in payloads]).astype(np.int64)
        starts = ends - np.array([len(p) for p in payloads], np.int64)
        frames = pub_frames(b"contract.direct", np.frombuffer(data, np.uint8), starts, ends)
        before = client.stats["out_msgs"]
        await nats_internals.write_frames(client, frames, len(payloads), len(data))
        await client.flush()
        await asyncio.wait_for(arrived.wait(), 10)
        NATS.check(got == payloads, "frames written by write_frames did not arrive intact at the direct sink")
        NATS.check(client.stats["out_msgs"] - before == len(payloads), "write_frames did not count out_msgs")
        NATS.check(client.stats["in_msgs"] >= len(payloads), "DirectClient did not count in_msgs")
    finally:
        await client.close()


async def _never_called(message: object) -> None:
    raise AssertionError("a message with a direct sink took nats-py's callback path")

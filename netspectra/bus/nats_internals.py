"""nats-py's private internals NetSpectra relies on; nothing else touches them.

Written against nats-py 2.x (2.16.0 checked; pyproject pins ``nats-py<3``). Each use is checked
by ``tests/unit/contracts/test_nats_internals.py``, which names the attribute and the installed
version when an upgrade breaks it. Both uses are speed-ups with a public fallback: when the
hooks are missing (:data:`DIRECT_DELIVERY`, :data:`FRAME_WRITES` false) the bus takes nats-py's
ordinary path, slower but correct.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.errors import FlushTimeoutError

PayloadSink = Callable[[bytes], None]


class DirectClient(Client):
    """A nats-py client that hands the payloads of chosen subscriptions straight to a sink.

    nats-py delivers every message through ~4 us of Python (a ``Msg`` object, a headers
    coroutine, the pending queue, a callback task); for the Go-compatible one-packet-per-message
    stream that is the engine's whole budget. For subscriptions registered in
    :attr:`payload_sinks` this override of the parser's hook (``Client._process_msg``) calls
    ``sink(payload)`` instead: measured 190-225 k -> 435-445 k messages/s here. Messages with
    headers and every other subscription take nats-py's normal path. The sink must be cheap and
    bounded (the engine's appends to a list and counts overflow as dropped).
    """

    def __init__(self) -> None:
        super().__init__()
        self.payload_sinks: dict[int, PayloadSink] = {}

    async def flush(self, timeout: int = 10) -> None:
        """nats-py's flush, once what its command buffer holds is written (see :func:`write_queued`).

        Overridden here, not only in ``NatsBus.flush``, because nats-py's own ``drain()`` of a
        subscription or a connection queues an UNSUB and then calls ``flush()``: with its PING
        ahead of the UNSUB, the server could still route messages to a subscription the client
        had already thrown away, and in a queue group no other member got them.
        """
        if not self.is_closed:
            try:
                await asyncio.wait_for(write_queued(self), timeout)
            except TimeoutError:
                raise FlushTimeoutError from None
        await super().flush(timeout)

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
        sink = self.payload_sinks.get(sid)
        if sink is None or headers:
            await super()._process_msg(sid, subject, reply, data, headers)
            return
        stats = self.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        sink(data)


#: True when nats-py still routes parsed messages through ``Client._process_msg``.
DIRECT_DELIVERY = callable(getattr(Client, "_process_msg", None))

#: True when the client has the command buffer its own ``publish`` writes through.
FRAME_WRITES = callable(getattr(Client, "_send_command", None)) and callable(
    getattr(Client, "_flush_pending", None)
)


def subscription_sid(subscription: Any) -> int:
    """The server-side id of a nats-py subscription (the key :class:`DirectClient` routes by)."""
    return int(subscription._id)


def reconnect_buffer_fits(client: Client, size: int) -> bool:
    """Whether ``size`` more bytes fit the buffer a disconnected client keeps for the server.

    The check ``publish`` makes before buffering while disconnected; the limit is the
    ``pending_size`` given to ``connect`` (``Client._max_pending_size``).
    """
    limit = client._max_pending_size
    return limit > 0 and client.pending_data_size + size <= limit


async def write_queued(client: Client) -> None:
    """Wait until everything queued in the client's command buffer is written to the socket.

    nats-py 2.x's ``flush()`` writes its PING straight to the transport (``Client._send_ping``),
    while SUB and PUB commands wait in ``Client._pending`` for the flusher task, so the PING went
    out ahead of a SUB queued just before it: the PONG could come back before the server had the
    subscription, and messages published after that "flush" found no subscriber and were dropped
    (``test_slow_consumer_drops_are_counted_exactly`` lost all 300, about 1 run in 30 at load 2).
    ``Client._flush_pending(force_flush=True)`` wakes the flusher and waits for it to write and
    drain the buffer; nats.py2 fixed the same bug in 2017 by sending the PING through the buffer.
    """
    await client._flush_pending(force_flush=True)


async def write_frames(client: Client, frames: bytes, messages: int, payload_bytes: int) -> None:
    """Queue ready-made ``PUB`` protocol bytes as ``publish`` queues its own, stats included.

    ``Client._send_command`` appends to the outgoing buffer (and flushes when it overflows);
    ``Client._flush_pending`` wakes the flusher unless a wake-up is already queued
    (``Client._flush_queue``), exactly the steps ``publish`` takes after building one frame.
    """
    client.stats["out_msgs"] += messages
    client.stats["out_bytes"] += payload_bytes
    await client._send_command(frames)
    if client._flush_queue is not None and client._flush_queue.empty():
        await client._flush_pending()

"""The small bus interface the probe and the engine talk through.

Two implementations: :class:`~netspectra.bus.nats.NatsBus` (a real NATS server, so probes and
engines can live in other processes and hosts) and :class:`~netspectra.bus.embedded.EmbeddedBus`
(in-process, for a single ``netspectra run``). Both carry the same subjects and the same bytes,
so roles never know which one they have.

Handlers are plain (synchronous) callables that receive a message with ``subject``, ``data`` and
``headers``: the engine's handler only appends bytes to a list, and an ``await`` per message would
cost more than the work itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from netspectra.errors import BusError


class BusMessage(Protocol):
    """What a handler receives (nats-py's ``Msg`` has exactly these attributes)."""

    subject: str
    data: bytes
    headers: dict[str, str] | None


Handler = Callable[[Any], None]


@dataclass
class BusStats:
    """What the bus lost or survived, for the roles' stats log lines; never silently zeroed."""

    dropped: int = 0  # messages dropped for a full pending queue (slow consumer)
    no_subscriber: int = 0  # messages published where nobody listened (counted by the embedded bus only)
    publish_failed: int = 0  # publishes refused (disconnected with a full reconnect buffer, closed)
    disconnects: int = 0
    reconnects: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class Subscription(Protocol):
    """A live subscription; ``drain`` delivers what is pending, then stops."""

    async def drain(self) -> None: ...

    async def unsubscribe(self) -> None: ...


class Bus(Protocol):
    """Publish bytes on a subject; subscribe a handler, optionally in a queue group."""

    stats: BusStats

    async def connect(self) -> None:
        """Open the connection; idempotent (probe and engine of one process share one bus)."""

    async def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        """Send one message; raises BusError (and counts it) when the bus refuses it."""

    async def publish_many(
        self, subject: str, data: bytes, starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64]
    ) -> int:
        """Send ``data[starts[i]:ends[i]]`` as one message each; return how many the bus accepted.

        The probe's per-packet (Go-compatible) path: one call per captured batch instead of one
        ``await`` per packet. Refused messages are counted in :attr:`BusStats.publish_failed`.
        """

    async def subscribe(
        self,
        subject: str,
        handler: Handler,
        *,
        queue: str = "",
        pending_msgs_limit: int = 2_000_000,
        pending_bytes_limit: int = 512 * 1024 * 1024,
    ) -> Subscription:
        """Call ``handler`` for each message on ``subject`` (one member of ``queue`` gets each)."""

    async def subscribe_payloads(
        self,
        subject: str,
        sink: Callable[[bytes], None],
        *,
        queue: str = "",
        pending_msgs_limit: int = 2_000_000,
        pending_bytes_limit: int = 512 * 1024 * 1024,
    ) -> Subscription:
        """Like :meth:`subscribe`, but ``sink`` receives only each payload, by the cheapest path."""

    async def flush(self, timeout: float = 10.0) -> None:
        """Return once everything published so far has left this process."""

    async def close(self) -> None:
        """Drain and close; idempotent."""


async def publish_each(
    bus: Bus, subject: str, data: bytes, starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64]
) -> int:
    """:meth:`Bus.publish_many` done as one :meth:`Bus.publish` per message; returns how many were accepted.

    The path for buses with nothing to batch (in-process), and NATS's fallback when the client
    lacks the hooks its batched path uses: a refused message is counted by ``publish`` and skipped.
    Every 2048 messages it yields to the event loop so subscribers and flushers keep running.
    """
    accepted = 0
    for index, (begin, end) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        try:
            await bus.publish(subject, data[begin:end])
        except BusError:
            continue
        accepted += 1
        if index % 2048 == 2047:
            await asyncio.sleep(0)
    return accepted

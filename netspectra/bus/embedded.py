"""The in-process bus: NATS subjects and bytes without a server, for a single-process run.

Each subscription has a bounded pending queue and a delivery task, as a NATS client does: a
publisher never waits for a slow handler, and a message that does not fit is dropped and
counted (``stats.dropped``), never lost silently; so is a message published on a subject nobody
subscribes to (``stats.no_subscriber``, with a warning: in one process that means the engine is
not listening yet, or listens on another subject). Queue groups deliver each message to one
member, round-robin. Subjects match with NATS wildcards (``*`` one token, ``>`` the rest).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from netspectra.bus.base import BusStats, Handler, publish_each
from netspectra.errors import BusError

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class EmbeddedMessage:
    subject: str
    data: bytes
    headers: dict[str, str] | None = None


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` matches one token, a final ``>`` one or more."""
    want = pattern.split(".")
    have = subject.split(".")
    for index, token in enumerate(want):
        if token == ">":
            return len(have) > index
        if index >= len(have) or (token != "*" and token != have[index]):
            return False
    return len(want) == len(have)


class EmbeddedSubscription:
    """One subscriber: a bounded queue drained by its own task."""

    def __init__(
        self, bus: EmbeddedBus, subject: str, queue: str, handler: Handler, max_msgs: int, max_bytes: int
    ) -> None:
        self.bus = bus
        self.subject = subject
        self.queue = queue
        self.handler = handler
        self.max_msgs = max_msgs
        self.max_bytes = max_bytes
        self.pending: collections.deque[EmbeddedMessage] = collections.deque()
        self.pending_bytes = 0
        self.wakeup = asyncio.Event()
        self.closed = False
        self.task = asyncio.get_running_loop().create_task(self._deliver(), name=f"embedded-sub:{subject}")

    def offer(self, message: EmbeddedMessage) -> bool:
        if self.closed:
            return False
        if len(self.pending) >= self.max_msgs or self.pending_bytes + len(message.data) > self.max_bytes:
            return False
        self.pending.append(message)
        self.pending_bytes += len(message.data)
        self.wakeup.set()
        return True

    async def _deliver(self) -> None:
        pending = self.pending
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while pending:
                message = pending.popleft()
                self.pending_bytes -= len(message.data)
                try:
                    self.handler(message)
                except Exception:  # a handler bug must not kill delivery; NATS behaves the same
                    logger.exception("Handler for %s failed", self.subject)
            if self.closed:
                return

    async def drain(self) -> None:
        """Deliver everything queued, then stop receiving."""
        self.bus._remove(self)
        self.closed = True
        self.wakeup.set()
        await self.task

    async def unsubscribe(self) -> None:
        self.bus._remove(self)
        self.closed = True
        self.pending.clear()
        self.task.cancel()


#: The subscribers of one subject: plain ones, then (queue name, members) per queue group.
_Route = tuple[list[EmbeddedSubscription], list[tuple[str, list[EmbeddedSubscription]]]]


class EmbeddedBus:
    """In-process bus shared by the probe and engine roles of one process."""

    def __init__(self) -> None:
        self.stats = BusStats()
        self._subscriptions: list[EmbeddedSubscription] = []
        self._round_robin: dict[tuple[str, str], int] = {}
        self._routes: dict[str, _Route] = {}
        self._closed = False
        self._last_unrouted_log = -float("inf")

    async def connect(self) -> None:
        if self._closed:
            raise BusError("the embedded bus is closed; it cannot be reopened")

    async def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        if self._closed:
            self.stats.publish_failed += 1
            raise BusError("publish on a closed embedded bus")
        message = EmbeddedMessage(subject, data, headers)
        route = self._routes.get(subject)
        if route is None:
            route = self._routes[subject] = self._route(subject)
        plain, groups = route
        if not plain and not groups:
            self._unrouted(subject)
            return
        for subscription in plain:
            if not subscription.offer(message):
                self.stats.dropped += 1
        for queue, members in groups:
            key = (subject, queue)
            turn = self._round_robin.get(key, 0)
            self._round_robin[key] = turn + 1
            if not members[turn % len(members)].offer(message):
                self.stats.dropped += 1

    def _unrouted(self, subject: str) -> None:
        self.stats.no_subscriber += 1
        now = time.monotonic()
        if now - self._last_unrouted_log >= 5.0:
            self._last_unrouted_log = now
            logger.warning(
                "Embedded bus: no subscriber on %s; %d messages dropped so far for want of one",
                subject,
                self.stats.no_subscriber,
            )

    async def publish_many(
        self, subject: str, data: bytes, starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64]
    ) -> int:
        """Per-message publish in a loop (in-process, there is no protocol to batch)."""
        return await publish_each(self, subject, data, starts, ends)

    def _route(self, subject: str) -> _Route:
        """The subscribers of ``subject``: plain ones, and the members of each queue group."""
        plain: list[EmbeddedSubscription] = []
        groups: dict[str, list[EmbeddedSubscription]] = {}
        for subscription in self._subscriptions:
            if subject_matches(subscription.subject, subject):
                if subscription.queue:
                    groups.setdefault(subscription.queue, []).append(subscription)
                else:
                    plain.append(subscription)
        return plain, list(groups.items())

    async def subscribe(
        self,
        subject: str,
        handler: Handler,
        *,
        queue: str = "",
        pending_msgs_limit: int = 2_000_000,
        pending_bytes_limit: int = 512 * 1024 * 1024,
    ) -> EmbeddedSubscription:
        await self.connect()
        subscription = EmbeddedSubscription(
            self, subject, queue, handler, pending_msgs_limit, pending_bytes_limit
        )
        self._subscriptions.append(subscription)
        self._routes.clear()
        return subscription

    async def subscribe_payloads(
        self,
        subject: str,
        sink: Callable[[bytes], None],
        *,
        queue: str = "",
        pending_msgs_limit: int = 2_000_000,
        pending_bytes_limit: int = 512 * 1024 * 1024,
    ) -> EmbeddedSubscription:
        """In process, the message object costs nothing extra: a plain subscription."""
        return await self.subscribe(
            subject,
            lambda message: sink(message.data),
            queue=queue,
            pending_msgs_limit=pending_msgs_limit,
            pending_bytes_limit=pending_bytes_limit,
        )

    def _remove(self, subscription: EmbeddedSubscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)
            self._routes.clear()

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait (up to ``timeout``) until every subscriber has taken what was published."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(s.pending for s in self._subscriptions) and loop.time() < deadline:
            await asyncio.sleep(0.001)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for subscription in list(self._subscriptions):
            await subscription.drain()
        if self.stats.no_subscriber or self.stats.dropped:
            logger.warning(
                "Embedded bus closed: %d messages dropped with no subscriber, %d for full pending queues",
                self.stats.no_subscriber,
                self.stats.dropped,
            )

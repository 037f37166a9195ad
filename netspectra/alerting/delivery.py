"""Delivery: one outbox per channel, in order, retried with backoff, kept across restarts.

Each channel has its own queue and its own task, so a channel that is down (or slow) never delays
the others. A batch that fails stays at the head of its queue and is retried after
``retry_initial`` seconds, doubling to ``retry_max``; nothing behind it overtakes it, so a
receiver sees every notification in the order it was made. The queues are saved with the alert
state (``on_change``) whenever they change, so notifications a down channel has not taken survive
a restart. Delivery is at least once: a crash after a receiver took a batch and before the queue
was saved sends it again; each notification's ``id`` lets a receiver drop the repeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from netspectra.alerting.channels import Channel, ChannelError
from netspectra.alerting.state import Notification

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class Outbox:
    """The queue and the sender task of one channel."""

    def __init__(
        self,
        channel: Channel,
        *,
        on_change: Callable[[], None] = lambda: None,
        sleep: Sleep = asyncio.sleep,
        retry_initial: float = 1.0,
        retry_max: float = 60.0,
        batch: int = 50,
    ) -> None:
        self.channel = channel
        self.pending: deque[Notification] = deque()
        self.on_change = on_change
        self.sleep = sleep
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.batch = batch
        self.delivered = 0
        self.failures = 0
        self._wake = asyncio.Event()

    def put(self, notes: list[Notification]) -> None:
        if notes:
            self.pending.extend(notes)
            self._wake.set()

    @property
    def idle(self) -> bool:
        return not self.pending

    async def run(self, stop: asyncio.Event) -> None:
        """Send until ``stop``; what is left stays queued (and saved) for the next start."""
        delay = self.retry_initial
        while not stop.is_set():
            if not self.pending:
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(stop.wait())
                try:
                    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                    stopper.cancel()
                continue
            batch = [self.pending[i] for i in range(min(self.batch, len(self.pending)))]
            try:
                await self.channel.send(batch)
            except (ChannelError, Exception) as error:  # a broken channel must not stop the alerter
                self.failures += 1
                if self.failures == 1 or self.failures % 10 == 0:
                    logger.warning(
                        "Alert channel %r: %s; %d notification(s) queued, retrying in %.3gs (failure %d)",
                        self.channel.name,
                        error if isinstance(error, ChannelError) else repr(error),
                        len(self.pending),
                        delay,
                        self.failures,
                    )
                await self._pause(delay, stop)
                delay = min(delay * 2, self.retry_max)
                continue
            if self.failures:
                logger.info(
                    "Alert channel %r delivers again after %d failure(s)", self.channel.name, self.failures
                )
            self.failures = 0
            delay = self.retry_initial
            for _ in batch:
                self.pending.popleft()
            self.delivered += len(batch)
            self.on_change()

    async def _pause(self, delay: float, stop: asyncio.Event) -> None:
        sleeper = asyncio.ensure_future(self.sleep(delay))
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()

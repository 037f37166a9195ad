"""A scripted reader and a recording channel: the alerter's two edges, under the test's control."""

from __future__ import annotations

from collections.abc import Sequence

from netspectra.alerting.channels import ChannelError
from netspectra.alerting.readings import Reading
from netspectra.alerting.state import Notification
from netspectra.config.models import AlertRuleConfig


class ScriptedReader:
    """``values[rule name]`` = {key: value} the store would answer now (the test changes it)."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, float]] = {}
        self.down = False
        self.broken: set[str] = set()

    async def read(self, rule: AlertRuleConfig, now: float | None = None) -> list[Reading]:
        if self.down:
            from netspectra.errors import StorageError

            raise StorageError("store down (scripted)")
        if rule.name in self.broken:
            raise RuntimeError(f"a bug reading {rule.name} (scripted)")
        return [Reading(key, value) for key, value in self.values.get(rule.name, {}).items()]


class RecordingChannel:
    """Keeps what it was sent; refuses while ``refusing`` returns True."""

    def __init__(self, name: str = "rec", refusing=lambda: False) -> None:  # type: ignore[no-untyped-def]
        self.name = name
        self.received: list[Notification] = []
        self.attempts = 0
        self.refusing = refusing

    async def send(self, notes: Sequence[Notification]) -> None:
        self.attempts += 1
        if self.refusing():
            raise ChannelError("refused (scripted)")
        self.received.extend(notes)


class ManualClock:
    """Seconds that move only when the test (or the fake sleep) moves them."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.sleepers = 0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        """The outbox's backoff: returns once the test has moved the clock ``seconds`` on."""
        import asyncio

        self.sleepers += 1
        target = self.now + seconds
        try:
            while self.now < target:
                await asyncio.sleep(0.001)
        finally:
            self.sleepers -= 1

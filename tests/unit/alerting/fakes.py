"""A scripted reader and a recording channel: the alerter's two edges, under the test's control."""

from __future__ import annotations

import asyncio
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
    """Seconds that move only when the test (or the fake sleep) moves them.

    A sleeper is woken by the assignment to ``now`` that reaches its target, and stops counting in
    :attr:`sleepers` at that moment, not when it next runs: a test that moves time only while
    something sleeps (the delivery test) cannot run ahead of a sleeper that has not woken yet. (The
    sleepers used to poll every millisecond; under load the test moved the clock 60 s before the
    outbox noticed its first second had passed, and the test failed.)
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._sleeping: list[tuple[float, asyncio.Future[None]]] = []

    @property
    def now(self) -> float:
        return self._now

    @now.setter
    def now(self, value: float) -> None:
        self._now = value
        for entry in [entry for entry in self._sleeping if entry[0] <= value]:
            self._sleeping.remove(entry)
            if not entry[1].done():
                entry[1].set_result(None)

    @property
    def sleepers(self) -> int:
        """Sleepers whose time has not come yet."""
        return len(self._sleeping)

    def __call__(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        """The outbox's backoff: returns once the test has moved the clock ``seconds`` on."""
        target = self._now + seconds
        if target <= self._now:
            return
        entry = (target, asyncio.get_running_loop().create_future())
        self._sleeping.append(entry)
        try:
            await entry[1]
        finally:
            if entry in self._sleeping:
                self._sleeping.remove(entry)

"""The alerter: every ``check_interval`` each rule is read, evaluated, and its transitions sent.

It runs as a role of its own (``serve(stop, ready)``) beside the api (see :mod:`netspectra.app`),
reads the store through the query layer, and keeps its state in ``alerter.state_dir/state.json``
(alerts, history, baselines and the channels' undelivered notifications), written atomically
after every check and every delivery. Time is injected (``clock``): tests drive :meth:`check`
with trace time, the role uses the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from netspectra.alerting.channels import Channel
from netspectra.alerting.delivery import Outbox, Sleep
from netspectra.alerting.evaluation import Evaluator
from netspectra.alerting.readings import Reading
from netspectra.alerting.state import Alert, AlertBook, Notification
from netspectra.config.models import AlerterConfig, AlertRuleConfig
from netspectra.errors import StorageError

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"
_VERSION = 1


class Reader(Protocol):
    async def read(self, rule: AlertRuleConfig, now: float | None = None) -> list[Reading] | None:
        """The rule's series now; None when the store holds nothing to judge (see StoreReader)."""


def load_state(state_dir: str | Path) -> dict[str, Any]:
    """The saved state ({} when there is none); a damaged file is set aside, not fatal."""
    path = Path(state_dir) / STATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        aside = path.with_suffix(f".damaged-{int(time.time())}")
        with contextlib.suppress(OSError):
            path.rename(aside)
        logger.error(
            "Alert state %s cannot be read (%s); set aside as %s, starting empty", path, error, aside
        )
        return {}
    return data if isinstance(data, dict) and data.get("version") == _VERSION else {}


def saved_alerts(state_dir: str | Path) -> tuple[list[Alert], list[Alert]]:
    """(active, history) as another process's alerter last saved them (for the api and the CLI)."""
    book = AlertBook(AlerterConfig())
    book.restore(load_state(state_dir).get("book", {}))
    return list(book.active.values()), list(book.history)


class Alerter:
    """Rules over a :class:`Reader`, one :class:`AlertBook`, one :class:`Outbox` per channel."""

    def __init__(
        self,
        config: AlerterConfig,
        reader: Reader,
        channels: Sequence[Channel],
        *,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.config = config
        self.reader = reader
        self.clock = clock
        self.book = AlertBook(config)
        self.evaluator = Evaluator(config.check_interval)
        self.outboxes = {
            channel.name: Outbox(
                channel,
                on_change=self.save,
                sleep=sleep,
                retry_initial=config.retry_initial,
                retry_max=config.retry_max,
            )
            for channel in channels
        }
        self.state_dir = Path(config.state_dir)
        self.checks = 0
        self._loaded = False
        #: channel → when its firing alerts were last re-sent
        self._refreshed: dict[str, float] = {}
        #: rules whose last check found nothing stored to judge (logged once per spell)
        self._unjudged: set[str] = set()

    # --- state ---------------------------------------------------------------------------------

    def load(self) -> None:
        """Restore the saved state (idempotent); notifications for channels now gone are dropped."""
        if self._loaded:
            return
        self._loaded = True
        data = load_state(self.state_dir)
        if not data:
            return
        rules = {rule.name: rule for rule in self.config.rules}
        self.book.restore(data.get("book", {}))
        self.evaluator.restore(data.get("evaluator", {}), rules)
        for name, items in dict(data.get("outbox", {})).items():
            outbox = self.outboxes.get(name)
            if outbox is None:
                logger.warning(
                    "Alert channel %r is no longer configured: %d notification(s) dropped", name, len(items)
                )
                continue
            outbox.pending.extend(Notification.from_json(item) for item in items)
        self._route(self.book.forget_rules(set(rules)), None)
        logger.info(
            "Alert state restored: %d active alert(s), %d queued notification(s)",
            len(self.book.active),
            sum(len(o.pending) for o in self.outboxes.values()),
        )

    def save(self) -> None:
        """Write the state atomically (a temporary file renamed over the old one)."""
        data = {
            "version": _VERSION,
            "book": self.book.to_json(),
            "evaluator": self.evaluator.to_json(keep=set(self.book.active)),
            "outbox": {name: [n.to_json() for n in outbox.pending] for name, outbox in self.outboxes.items()},
        }
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / STATE_FILE
        temporary = path.with_suffix(".tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(data, separators=(",", ":")))  # dumps: the C encoder, 4x dump's
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    # --- checks --------------------------------------------------------------------------------

    async def check(self, now: float | None = None) -> list[Notification]:
        """Evaluate every rule once at ``now`` (default: the clock); the notifications made, in order."""
        self.load()
        now = self.clock() if now is None else now
        made: list[Notification] = []
        routed: list[tuple[list[Notification], AlertRuleConfig]] = []
        for rule in self.config.rules:
            try:
                readings = await self.reader.read(rule, now)
            except StorageError as error:
                logger.warning("Alert rule %r not checked: the store cannot answer (%s)", rule.name, error)
                continue
            except Exception:  # one rule's fault must not cost the others their check (or their notes)
                logger.exception("Alert rule %r not checked: reading its metric failed", rule.name)
                continue
            if readings is None:  # nothing stored to judge (an engine restarting): nothing changes
                if rule.name not in self._unjudged:
                    self._unjudged.add(rule.name)
                    logger.info("Alert rule %r waits: its task has no flow stored yet", rule.name)
                self.evaluator.hold(rule, now)
                continue
            self._unjudged.discard(rule.name)
            observations = self.evaluator.evaluate(rule, readings, now, self.book.firing_keys(rule.name))
            notes = self.book.update(rule, observations, now, unknown=self.evaluator.unknown(rule.name))
            routed.append((notes, rule))
            made.extend(notes)
        self.checks += 1
        for notes, rule in routed:  # after the whole check: a channel takes one check as one batch
            self._route(notes, rule)
        self._refresh(made, now)
        self.save()
        for note in made:
            logger.info(
                "Alert %s: %s %s (%s = %g)",
                note.status,
                note.rule,
                note.key or note.task,
                note.metric,
                note.value,
            )
        return made

    def _route(self, notes: list[Notification], rule: AlertRuleConfig | None) -> None:
        if not notes:
            return
        wanted = set(rule.channels) if rule is not None and rule.channels else None
        for name, outbox in self.outboxes.items():
            if wanted is None or name in wanted:
                outbox.put(notes)

    def _refresh(self, made: list[Notification], now: float) -> None:
        """Re-send the firing alerts to channels that want it (Alertmanager: see its channel)."""
        just_sent = {note.alert_id for note in made}
        rules = {rule.name: rule for rule in self.config.rules}
        for name, outbox in self.outboxes.items():
            every = getattr(outbox.channel, "refresh", None)
            if every is None or now - self._refreshed.get(name, float("-inf")) < every:
                continue
            self._refreshed[name] = now
            notes = []
            for alert in self.book.active.values():
                rule = rules.get(alert.rule)
                wanted = rule is not None and (not rule.channels or name in rule.channels)
                if alert.status == "firing" and alert.notified and wanted and alert.id not in just_sent:
                    notes.append(self.book.refresh_note(alert, now))
            outbox.put(notes)

    def alerts(self) -> tuple[list[Alert], list[Alert]]:
        """(active, history), newest last."""
        return list(self.book.active.values()), list(self.book.history)

    # --- the role ------------------------------------------------------------------------------

    def describe_start(self) -> str:
        channels = ", ".join(self.outboxes) or "no channel (alerts are only listed)"
        rules, every = len(self.config.rules), self.config.check_interval
        return f"Started alerter: {rules} rule(s) every {every:g}s, channels: {channels}"

    async def deliver(self, stop: asyncio.Event) -> None:
        """Run every outbox until ``stop`` (tests run this beside their own :meth:`check` calls)."""
        async with asyncio.TaskGroup() as group:
            for outbox in self.outboxes.values():
                group.create_task(outbox.run(stop))

    async def wait_delivered(self, timeout: float = 30.0) -> None:
        """Until every outbox is empty (tests; a graceful stop)."""

        async def idle() -> None:
            while any(not outbox.idle for outbox in self.outboxes.values()):
                await asyncio.sleep(0.01)

        await asyncio.wait_for(idle(), timeout)

    async def serve(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        self.load()
        logger.info("%s", self.describe_start())
        if ready is not None:
            ready.set()
        async with asyncio.TaskGroup() as group:
            group.create_task(self.deliver(stop))
            while not stop.is_set():
                started = time.monotonic()
                try:
                    await self.check()
                except Exception:
                    logger.exception("Alert check failed; trying again at the next interval")
                wait = max(0.0, self.config.check_interval - (time.monotonic() - started))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
        self.save()
        logger.info("Stopped alerter")

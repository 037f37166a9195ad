"""Alert state: pending → firing → resolved, one alert per (rule, flow), and what to notify.

The rules of the machine, per (rule, key) at each check:

* the condition holds and no alert exists: the alert is **pending** since now;
* pending and held for the rule's ``for``: **firing**. A firing notification goes out, unless the
  same (rule, key) resolved less than ``cooldown`` ago (a flapping condition is then one alert
  that stays quiet; it is notified when the cooldown has passed and it still fires);
* firing and a notification older than ``repeat_interval``: notified again (same alert id);
* the condition no longer holds (or the series is gone): pending alerts vanish silently, firing
  ones **resolve**, with a resolved notification when their firing was notified (the cooldown
  counts from that notified resolve, so a condition flapping for hours is notified once per
  cooldown, not once per flap);
* a check that could not read the store, or found nothing stored to judge (an engine restarting,
  see :class:`~netspectra.alerting.readings.StoreReader`), changes nothing: an outage or a
  restart resolves nothing.

The book is saved (atomically, with the undelivered notifications) after every check, so a restart
neither notifies "firing" again for an alert already notified nor forgets to resolve it.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from netspectra.alerting.rules import Observation, describe
from netspectra.config.models import AlerterConfig, AlertRuleConfig

AlertStatus = Literal["pending", "firing", "resolved"]


@dataclass
class Alert:
    """One (rule, key)'s alert; ``key`` names the flow ("" for a task-wide rule)."""

    id: str
    rule: str
    key: str
    task: str
    metric: str
    severity: str
    status: AlertStatus
    value: float
    bound: float
    condition: str
    labels: dict[str, str]
    pending_since: float
    fired_at: float = 0.0
    resolved_at: float = 0.0
    last_notified: float = 0.0
    #: True once a firing notification went out (only then does its resolve go out).
    notified: bool = False

    @property
    def fingerprint(self) -> tuple[str, str]:
        return self.rule, self.key


@dataclass(frozen=True)
class Notification:
    """One message to the channels: an alert's state at one moment. ``id`` is unique per message;
    ``alert_id`` is shared by an alert's firing, repeats and resolve (receivers deduplicate on it)."""

    id: str
    alert_id: str
    status: Literal["firing", "resolved"]
    rule: str
    key: str
    task: str
    metric: str
    severity: str
    value: float
    bound: float
    condition: str
    labels: dict[str, str]
    starts_at: float
    ends_at: float
    at: float
    repeat: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notification:
        return cls(**data)


@dataclass
class AlertBook:
    """Every active alert, recent history and resolve times, with the transitions of each check."""

    config: AlerterConfig
    active: dict[tuple[str, str], Alert] = field(default_factory=dict)
    history: deque[Alert] = field(default_factory=deque)
    #: (rule, key) → when it last resolved (for the cooldown)
    resolved_at: dict[tuple[str, str], float] = field(default_factory=dict)

    def firing_keys(self, rule: str) -> set[str]:
        return {
            key for (name, key), alert in self.active.items() if name == rule and alert.status == "firing"
        }

    def update(
        self,
        rule: AlertRuleConfig,
        observations: list[Observation],
        now: float,
        unknown: set[str] | frozenset[str] = frozenset(),
    ) -> list[Notification]:
        """Apply one check of ``rule``; the notifications it causes, in order. ``unknown``: keys
        read but not judged yet (a rate needs a second sample): their alerts stay as they are."""
        notes: list[Notification] = []
        holding = {o.key: o for o in observations if o.holds}
        observed = {o.key: o for o in observations}
        repeat_interval = (
            rule.repeat_interval if rule.repeat_interval is not None else self.config.repeat_interval
        )
        cooldown = rule.cooldown if rule.cooldown is not None else self.config.cooldown
        for key, observation in holding.items():
            alert = self.active.get((rule.name, key))
            if alert is None:
                labels = {**rule.labels, **dict(observation.labels)}
                alert = Alert(
                    id=uuid.uuid4().hex,
                    rule=rule.name,
                    key=key,
                    task=rule.task_name,
                    metric=rule.metric,
                    severity=rule.severity,
                    status="pending",
                    value=observation.value,
                    bound=observation.bound,
                    condition=describe(rule),
                    labels=labels,
                    pending_since=now,
                )
                self.active[(rule.name, key)] = alert
            alert.value, alert.bound = observation.value, observation.bound
            if alert.status == "pending" and now - alert.pending_since >= rule.for_:
                alert.status, alert.fired_at = "firing", now
            if alert.status != "firing":
                continue
            if not alert.notified:
                last = self.resolved_at.get((rule.name, key))
                if last is None or now - last >= cooldown:
                    alert.notified, alert.last_notified = True, now
                    notes.append(self._note(alert, "firing", now))
            elif now - alert.last_notified >= repeat_interval:
                alert.last_notified = now
                notes.append(self._note(alert, "firing", now, repeat=True))
        staying = holding.keys() | unknown
        for fingerprint in [f for f in self.active if f[0] == rule.name and f[1] not in staying]:
            alert = self.active.pop(fingerprint)
            if alert.status == "pending":
                continue
            seen = observed.get(alert.key)
            if seen is not None:
                alert.value = seen.value
            alert.status, alert.resolved_at = "resolved", now
            self._remember(alert)
            if alert.notified:  # the cooldown counts from the last resolve a receiver saw
                self.resolved_at[fingerprint] = now
                notes.append(self._note(alert, "resolved", now))
        return notes

    def forget_rules(self, names: set[str]) -> list[Notification]:
        """Resolve alerts of rules that are no longer configured (a config change across a restart)."""
        notes = []
        for fingerprint in [f for f in self.active if f[0] not in names]:
            alert = self.active.pop(fingerprint)
            if alert.status == "firing" and alert.notified:
                alert.status = "resolved"
                notes.append(self._note(alert, "resolved", alert.last_notified))
        return notes

    def refresh_note(self, alert: Alert, now: float) -> Notification:
        """A re-send of a firing alert for a channel that needs it (Alertmanager); no state changes."""
        return self._note(alert, "firing", now, repeat=True)

    def _remember(self, alert: Alert) -> None:
        self.history.append(replace(alert))
        while len(self.history) > self.config.history_limit:
            self.history.popleft()

    @staticmethod
    def _note(
        alert: Alert, status: Literal["firing", "resolved"], now: float, repeat: bool = False
    ) -> Notification:
        return Notification(
            id=uuid.uuid4().hex,
            alert_id=alert.id,
            status=status,
            rule=alert.rule,
            key=alert.key,
            task=alert.task,
            metric=alert.metric,
            severity=alert.severity,
            value=alert.value,
            bound=alert.bound,
            condition=alert.condition,
            labels=dict(alert.labels),
            starts_at=alert.fired_at,
            ends_at=alert.resolved_at if status == "resolved" else 0.0,
            at=now,
            repeat=repeat,
        )

    # --- persistence ------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "active": [asdict(alert) for alert in self.active.values()],
            "history": [asdict(alert) for alert in self.history],
            "resolved_at": [[rule, key, at] for (rule, key), at in self.resolved_at.items()],
        }

    def restore(self, data: dict[str, Any]) -> None:
        self.active = {}
        for item in data.get("active", []):
            alert = Alert(**item)
            self.active[alert.fingerprint] = alert
        self.history = deque(Alert(**item) for item in data.get("history", []))
        self.resolved_at = {(rule, key): float(at) for rule, key, at in data.get("resolved_at", [])}

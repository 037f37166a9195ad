"""Alerts as the api shows them: the ListAlerts RPC's messages and Grafana annotations.

The alerts come from the alerter in this process, or, when it runs elsewhere on this host, from
the state file it saves (``alerter.state_dir``), so an api started alone still lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from netspectra.alerting.alerter import saved_alerts
from netspectra.alerting.state import Alert
from netspectra.errors import QueryError
from netspectra.wire.generated import v1

#: () → (active alerts, resolved history), newest last.
AlertSource = Callable[[], tuple[list[Alert], list[Alert]]]
STATES = ("", "active", "firing", "history", "all")
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000


def file_source(state_dir: str) -> AlertSource:
    return lambda: saved_alerts(state_dir)


def select(source: AlertSource, state: str, rule: str = "", limit: int = 0) -> list[Alert]:
    """Active alerts (firing first, oldest first) and/or history (newest first), at most ``limit``."""
    if state not in STATES:
        raise QueryError(f"state {state[:32]!r} is unknown; use active, firing, history or all")
    if limit < 0 or limit > MAX_LIMIT:
        raise QueryError(f"limit {limit} is out of range 1..{MAX_LIMIT} (0 = {DEFAULT_LIMIT})")
    active, history = source()
    chosen: list[Alert] = []
    if state in ("", "active", "all"):
        chosen += sorted(active, key=lambda a: (a.status != "firing", a.fired_at or a.pending_since))
    elif state == "firing":
        chosen += sorted((a for a in active if a.status == "firing"), key=lambda a: a.fired_at)
    if state in ("history", "all"):
        chosen += list(reversed(history))
    if rule:
        chosen = [alert for alert in chosen if alert.rule == rule]
    return chosen[: limit or DEFAULT_LIMIT]


def _stamp(seconds: float) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds > 0 else None


def to_message(alert: Alert) -> v1.Alert:
    return v1.Alert(
        id=alert.id,
        rule=alert.rule,
        key=alert.key,
        task_name=alert.task,
        metric=alert.metric,
        severity=alert.severity,
        status=alert.status,
        value=alert.value,
        bound=alert.bound,
        condition=alert.condition,
        labels=dict(alert.labels),
        pending_since=_stamp(alert.pending_since),
        fired_at=_stamp(alert.fired_at),
        resolved_at=_stamp(alert.resolved_at),
    )


def grafana_annotations(source: AlertSource, start: int, end: int, rule: str = "") -> list[dict[str, Any]]:
    """simpod/grafana-json-datasource annotations: one region per alert that fired inside [start, end]
    (seconds), from its firing to its resolve (or to now while it fires)."""
    active, history = source()
    found = []
    for alert in [*history, *active]:
        if alert.status == "pending" or (rule and alert.rule != rule):
            continue
        until = alert.resolved_at or alert.fired_at
        if alert.fired_at > end or until < start:
            continue
        where = f"{alert.task} {alert.key}".strip()
        found.append(
            {
                "time": int(alert.fired_at * 1000),
                "timeEnd": int(until * 1000),
                "title": f"{alert.rule} ({alert.severity})",
                "text": f"{where}: {alert.metric} = {alert.value:g} ({alert.condition}); {alert.status}",
                "tags": [alert.rule, alert.severity, alert.status, alert.task],
            }
        )
    return sorted(found, key=lambda item: item["time"])

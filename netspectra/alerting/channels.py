"""Where notifications go: a generic webhook, a Slack-compatible webhook, Alertmanager, email.

Every channel takes a batch (the notifications waiting for it, in order) and either delivers all
of it or raises :class:`ChannelError`; :mod:`.delivery` retries. HTTP uses the standard library's
client in a worker thread: three POSTs of JSON do not justify a new dependency, and urllib
speaks HTTPS with the system's CA store.

The webhook's signature: ``X-NetSpectra-Signature: sha256=<hex>`` is HMAC-SHA256 with the
channel's ``secret`` over ``<X-NetSpectra-Timestamp>.<body>`` (the timestamp is epoch seconds;
a receiver refuses old ones to stop replays), as Stripe and Slack sign theirs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from netspectra.alerting.state import Notification
from netspectra.config.models import ChannelConfig
from netspectra.errors import NetSpectraError

SIGNATURE_HEADER = "X-NetSpectra-Signature"
TIMESTAMP_HEADER = "X-NetSpectra-Timestamp"


class ChannelError(NetSpectraError):
    """A channel could not deliver a batch (refused, unreachable, timed out)."""


class Channel(Protocol):
    name: str

    async def send(self, notes: Sequence[Notification]) -> None:
        """Deliver every notification of ``notes`` or raise ChannelError."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The value of :data:`SIGNATURE_HEADER` for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def summary(note: Notification) -> str:
    """``[FIRING] Potential_DDoS (ss_src_dst, flow 10.0.0.1): super_spreader_spread = 6100 (> 5000)``."""
    where = f"{note.task}, {note.key}" if note.key else note.task
    state = "RESOLVED" if note.status == "resolved" else "FIRING"
    return f"[{state}] {note.rule} ({where}): {note.metric} = {note.value:g} ({note.condition})"


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as error:
        raise ChannelError(f"{url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        reason = getattr(error, "reason", error)
        raise ChannelError(f"{url}: {reason}") from None


class HttpChannel:
    """Base of the three HTTP channels: one JSON POST per batch."""

    def __init__(self, config: ChannelConfig) -> None:
        self.name = config.name
        self.config = config
        self.url = config.url

    def payload(self, notes: Sequence[Notification]) -> Any:
        raise NotImplementedError

    def target(self) -> str:
        return self.url

    def headers(self, body: bytes) -> dict[str, str]:
        return {"Content-Type": "application/json", "User-Agent": "netspectra-alerter", **self.config.headers}

    async def send(self, notes: Sequence[Notification]) -> None:
        body = json.dumps(self.payload(notes), separators=(",", ":")).encode()
        await asyncio.to_thread(_post, self.target(), body, self.headers(body), self.config.timeout)


class WebhookChannel(HttpChannel):
    """``{"source": "netspectra", "notifications": [...]}``, signed when a ``secret`` is set."""

    def payload(self, notes: Sequence[Notification]) -> Any:
        return {"source": "netspectra", "version": 1, "notifications": [n.to_json() for n in notes]}

    def headers(self, body: bytes) -> dict[str, str]:
        headers = super().headers(body)
        if self.config.secret is not None:
            stamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = stamp
            headers[SIGNATURE_HEADER] = sign(self.config.secret.get_secret_value(), stamp, body)
        return headers


class SlackChannel(HttpChannel):
    """A Slack (or Mattermost, Rocket.Chat) incoming webhook: one ``text`` message per batch."""

    def payload(self, notes: Sequence[Notification]) -> Any:
        return {"text": "\n".join(summary(note) for note in notes)}


def alertmanager_alert(note: Notification, valid_for: float = 240.0) -> dict[str, Any]:
    """One alert of Alertmanager's API v2: labels identify it; ``endsAt`` is the resolve time, or
    for a firing alert ``valid_for`` seconds ahead (re-sent before then while it fires)."""
    labels = {"alertname": note.rule, "severity": note.severity, "task": note.task, "metric": note.metric}
    labels.update(note.labels)
    if note.key:
        labels["flow"] = note.key
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": {"summary": summary(note), "value": f"{note.value:g}", "condition": note.condition},
        "startsAt": iso(note.starts_at or note.at),
    }
    if note.status == "resolved":
        alert["endsAt"] = iso(note.ends_at or note.at)
    else:
        alert["endsAt"] = iso(note.at + valid_for)
    return alert


class AlertmanagerChannel(HttpChannel):
    """Prometheus Alertmanager's ``POST /api/v2/alerts``; routing and silences are then its job.

    Alertmanager expects a firing alert to be re-sent while it fires, as Prometheus does: the
    alerter re-sends every firing alert of this channel each ``refresh`` seconds (and at least at
    every check), each valid for four refreshes, so an alerter that dies leaves no alert firing
    for ever and a live one never lets Alertmanager time one out.
    """

    #: seconds between re-sends of the firing alerts (Prometheus's resend delay is 1 m)
    refresh = 60.0

    def target(self) -> str:
        return self.url.rstrip("/") + "/api/v2/alerts"

    def payload(self, notes: Sequence[Notification]) -> Any:
        return [alertmanager_alert(note, 4 * self.refresh) for note in notes]

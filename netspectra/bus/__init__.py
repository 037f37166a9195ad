"""The message bus between probe and engine: NATS, or an in-process stand-in with the same subjects."""

from __future__ import annotations

from netspectra.bus.base import Bus, BusMessage, BusStats, Handler, Subscription
from netspectra.bus.embedded import EmbeddedBus
from netspectra.config.models import EMBEDDED_BUS, NatsAuth


def open_bus(url: str, auth: NatsAuth | None = None, *, name: str = "netspectra") -> Bus:
    """The bus for ``url``: the in-process bus for ``"embedded"``, else a NATS client (not yet connected).

    Build ONE per process and hand it to every role of that process: the embedded bus only
    connects roles that share the object, and one NATS connection serves publish and subscribe.
    """
    if url == EMBEDDED_BUS:
        return EmbeddedBus()
    from netspectra.bus.nats import NatsBus

    return NatsBus(url, auth, name=name)


__all__ = ["Bus", "BusMessage", "BusStats", "EmbeddedBus", "Handler", "Subscription", "open_bus"]

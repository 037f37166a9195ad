"""The in-process bus: NATS subject semantics, queue groups, bounded queues that count drops."""

from __future__ import annotations

import asyncio

import pytest

from netspectra.bus import EmbeddedBus, open_bus
from netspectra.bus.embedded import subject_matches
from netspectra.errors import BusError


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("a.b", "a.b", True),
        ("a.b", "a.b.c", False),
        ("a.*", "a.b", True),
        ("a.*", "a.b.c", False),
        ("a.>", "a.b.c", True),
        ("a.>", "a", False),
        ("*.b", "a.b", True),
        ("gons.packets.raw", "gons.packets.raw.batch", False),
    ],
)
def test_subject_matching_follows_nats(pattern: str, subject: str, expected: bool) -> None:
    assert subject_matches(pattern, subject) is expected


async def test_every_plain_subscriber_gets_every_message_in_order() -> None:
    bus = open_bus("embedded")
    assert isinstance(bus, EmbeddedBus)
    first: list[bytes] = []
    second: list[bytes] = []
    await bus.subscribe("s", lambda m: first.append(m.data))
    await bus.subscribe("s", lambda m: second.append(m.data))
    payloads = [bytes([i]) for i in range(100)]
    for payload in payloads:
        await bus.publish("s", payload)
    await bus.publish("other", b"x")
    await bus.flush()
    assert first == payloads
    assert second == payloads
    await bus.close()


async def test_queue_group_members_split_the_stream_exactly() -> None:
    bus = EmbeddedBus()
    got: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    for name in got:
        await bus.subscribe("s", lambda m, name=name: got[name].append(m.data[0]), queue="q")
    for i in range(90):
        await bus.publish("s", bytes([i]))
    await bus.flush()
    assert sorted(got["a"] + got["b"] + got["c"]) == list(range(90))
    assert [len(v) for v in got.values()] == [30, 30, 30]
    await bus.close()


async def test_full_pending_queue_drops_and_counts() -> None:
    bus = EmbeddedBus()
    received: list[bytes] = []
    await bus.subscribe("s", lambda m: received.append(m.data), pending_msgs_limit=10)
    for i in range(25):  # no await point lets the delivery task run in between
        await bus.publish("s", bytes([i]))
    await bus.flush()
    assert len(received) == 10
    assert bus.stats.dropped == 15
    await bus.close()


async def test_drain_delivers_pending_then_stops() -> None:
    bus = EmbeddedBus()
    received: list[bytes] = []
    subscription = await bus.subscribe("s", lambda m: received.append(m.data))
    for i in range(5):
        await bus.publish("s", bytes([i]))
    await subscription.drain()
    assert len(received) == 5
    await bus.publish("s", b"late")
    await asyncio.sleep(0)
    assert len(received) == 5
    await bus.close()
    with pytest.raises(BusError):
        await bus.publish("s", b"closed")
    assert bus.stats.publish_failed == 1


async def test_message_nobody_subscribes_to_is_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    """In one process a publish before the engine subscribes is a loss: counted, warned, never silent."""
    bus = EmbeddedBus()
    received: list[bytes] = []
    for i in range(3):
        await bus.publish("s", bytes([i]))
    await bus.subscribe("s", lambda m: received.append(m.data))
    await bus.publish("s", b"heard")
    await bus.publish("elsewhere", b"unheard")
    await bus.flush()
    assert received == [b"heard"]
    assert bus.stats.no_subscriber == 4
    assert bus.stats.dropped == 0  # a full queue is another kind of loss, counted apart
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings and "no subscriber on s" in warnings[0]  # the first loss is logged at once
    caplog.clear()
    await bus.close()
    assert any("4 messages dropped with no subscriber" in r.getMessage() for r in caplog.records)

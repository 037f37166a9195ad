"""The engine's gap: counted from the first count it sees per probe, at the count's place in the stream.

The role's bus sinks are fed directly in a chosen order (what NATS delivers from one probe's
connection), so each case is exact: the gap is compared with the packets actually withheld.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from netspectra.config.models import Settings
from netspectra.engine.probe_counts import ProbeCounts
from netspectra.engine.role import EngineRole
from netspectra.model.packets import PacketColumns
from netspectra.wire.codec import encode_packet_infos, encode_packets
from netspectra.wire.subjects import ProbeCount, encode_probe_count
from tests.unit.engine.engine_helpers import random_batch


class CountingEngine:
    def __init__(self) -> None:
        self.packets = 0
        self.progress: object = None

    async def ingest(self, columns: PacketColumns, progress: object = None) -> None:
        self.packets += len(columns)
        self.progress = progress


@pytest.fixture
def role() -> Iterator[EngineRole]:
    role = EngineRole(Settings(), bus=None, engine=CountingEngine())  # type: ignore[arg-type]
    role._decoder = ThreadPoolExecutor(max_workers=1)
    yield role
    role._decoder.shutdown()


def infos(count: int, seed: int = 0) -> list[bytes]:
    return encode_packet_infos(random_batch(np.random.default_rng(seed), count))


def count(packets: int, messages: int | None = None, probe: str = "p") -> bytes:
    return encode_probe_count(ProbeCount(probe, packets, packets if messages is None else messages))


def feed(role: EngineRole, payloads: list[bytes]) -> None:
    for payload in payloads:
        role._on_info(payload)


async def test_packets_published_after_the_count_do_not_make_the_gap_negative(role: EngineRole) -> None:
    """The -4096 at start-up: a capture batch arrived after the count that does not include it yet."""
    role._on_count(count(0))  # the probe's opening count
    feed(role, infos(4096, 1))
    role._on_count(count(4096))
    feed(role, infos(4096, 2))  # published after that count, read before the next one
    await role._flush()
    assert role.stats.packets == 8192
    assert role.stats.gap == 0
    role._on_count(count(8192))
    await role._flush()
    assert role.stats.gap == 0


async def test_loss_after_the_opening_count_is_all_reported(role: EngineRole) -> None:
    role._on_count(count(0))
    sent = infos(1000)
    feed(role, sent[:300] + sent[310:])  # 10 lost in flight
    role._on_count(count(1000))
    await role._flush()
    assert (role.stats.packets, role.stats.gap) == (990, 10)


async def test_a_probe_started_before_the_engine_is_owed_only_what_followed_its_first_count(
    role: EngineRole,
) -> None:
    """The engine subscribed mid-stream: 10,000 published, of which it caught the last 300."""
    feed(role, infos(300, 1))
    role._on_count(count(10_000))
    sent = infos(500, 2)
    feed(role, sent)
    role._on_count(count(10_500))
    await role._flush()
    assert role.stats.published == 10_500
    assert role.stats.gap == 0
    feed(role, sent[:400])  # 500 more published, 100 lost
    role._on_count(count(11_000))
    await role._flush()
    assert role.stats.gap == 100


async def test_batched_counts_are_cut_where_they_arrived(role: EngineRole) -> None:
    role._on_count(count(0, 0))
    encoded = encode_packets(random_batch(np.random.default_rng(3), 1000))
    batches = encoded.batches(100)
    for data, _ in batches[:5]:
        role._on_batch(data)
    role._on_count(count(500, 5))
    for data, _ in batches[6:]:  # the sixth batch (100 packets) is lost, the rest is after the count
        role._on_batch(data)
    await role._flush()
    assert role.stats.packets == 900
    assert role.stats.gap == 0  # the loss is not visible until a count covers it
    role._on_count(count(1000, 10))
    await role._flush()
    assert role.stats.gap == 100


@pytest.mark.parametrize(
    "forged",
    [
        b'{"probe": "p", "packets": 1e308, "messages": 1}',
        b'{"probe": "p", "packets": Infinity, "messages": 1}',
        b'{"probe": "p", "packets": NaN, "messages": 1}',
        b'{"probe": "p", "packets": -5, "messages": 1}',
        b'{"probe": "p", "packets": "99", "messages": 1}',
        b'{"probe": "p", "packets": 1' + b"0" * 308 + b', "messages": 1}',
    ],
)
async def test_forged_counts_are_refused_and_change_nothing(role: EngineRole, forged: bytes) -> None:
    role._on_count(count(0))
    feed(role, infos(50))
    role._on_count(forged)
    role._on_count(count(50))
    await role._flush()
    assert (role.stats.published, role.stats.gap, role.stats.bad_count_messages) == (50, 0, 1)


async def test_a_decreasing_count_is_refused_and_counted(role: EngineRole) -> None:
    role._on_count(count(0))
    feed(role, infos(50))
    role._on_count(count(50))
    role._on_count(count(20))  # counts are cumulative: going back is forged or a reused id
    role._on_count(count(50, 10))  # fewer messages than before
    await role._flush()
    assert role.stats.published == 50
    assert role.stats.gap == 0
    assert role.stats.counts.rejects == {"malformed": 0, "out_of_range": 0, "decreasing": 2}


def test_gap_of_several_probes_is_never_negative() -> None:
    """Probe b's packets after its last count are in the arrivals a's count is compared with."""
    counts = ProbeCounts()
    assert counts.gap is None and counts.published is None
    counts.record(ProbeCount("a", 0, 0), arrived=0)
    counts.record(ProbeCount("b", 0, 0), arrived=0)
    counts.record(ProbeCount("b", 100, 100), arrived=100)
    counts.record(ProbeCount("a", 100, 100), arrived=400)  # b sent 200 more since its count
    assert counts.gap == 0
    counts.record(ProbeCount("b", 300, 300), arrived=400)  # b's next count covers them
    assert counts.gap == 0
    counts.record(ProbeCount("b", 310, 310), arrived=400)  # 10 of b's lost
    assert counts.gap == 10
    assert counts.by_probe == {"a": 100, "b": 310}


def test_a_resumed_accounting_continues_the_gap_across_a_restart() -> None:
    """Truth: one probe's stream split at a restart; what neither run holds is exactly the gap."""
    first = ProbeCounts()
    first.record(ProbeCount("p", 0, 0), arrived=0)
    first.record(ProbeCount("p", 1000, 1000), arrived=1000)
    stored = first.progress(arrived=1200)  # the last snapshot stored: 1200 packets had arrived
    # the first run counted 300 more after it and died; 500 were published while nobody listened
    second = ProbeCounts.resumed(stored)
    assert second.gap == 0 and second.by_probe == {"p": 1000}
    second.record(ProbeCount("p", 2000, 2000), arrived=0)  # first count the new run sees
    assert second.take_restart_loss() == ("p", 800) and second.take_restart_loss() is None
    second.record(ProbeCount("p", 2600, 2600), arrived=600)  # the new run receives everything now
    assert second.gap == 800 == 2600 - (1200 + 600)  # published minus what the two runs' stores hold
    assert second.take_restart_loss() is None
    assert ProbeCounts.resumed(second.progress(arrived=600)).gap == 800


@pytest.mark.parametrize(
    "progress",
    [
        {},
        {"version": 99, "arrived": 1, "arrived_at_first": 0, "arrived_at_cut": 0, "probes": {}},
        {"version": 1, "arrived": -1, "arrived_at_first": 0, "arrived_at_cut": 0, "probes": {}},
        {"version": 1, "arrived": 5, "arrived_at_first": 0, "arrived_at_cut": 9, "probes": {}},
        {
            "version": 1,
            "arrived": 5,
            "arrived_at_first": 0,
            "arrived_at_cut": 0,
            "probes": {"p": [0.5, 1, 2]},
        },
        {"version": 1, "arrived": 5, "arrived_at_first": 0, "arrived_at_cut": 0, "probes": {"p": [1]}},
    ],
)
def test_a_progress_that_cannot_be_true_is_not_resumed(progress: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ProbeCounts.resumed(progress)


async def test_every_ingest_carries_the_accounting_after_it(role: EngineRole) -> None:
    role._on_count(count(0))
    feed(role, infos(100, 3))
    role._on_count(count(100))
    await role._flush()
    engine = role.engine
    assert engine.progress == role.stats.counts.progress(100)
    assert engine.progress["probes"] == {"p": [0, 100, 100]}  # the count after the last packet too

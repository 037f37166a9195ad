"""Subject names and the probe count message: one format, written by the probe, read by the engine."""

from __future__ import annotations

import json

import pytest

from netspectra.bus.embedded import EmbeddedBus
from netspectra.config.models import Settings
from netspectra.engine.role import EngineRole
from netspectra.errors import WireError
from netspectra.probe.publisher import Publisher
from netspectra.wire.subjects import (
    DEFAULT_QUEUE_GROUP,
    DEFAULT_SUBJECT,
    MAX_PROBE_COUNT,
    BadProbeCount,
    ProbeCount,
    batch_subject,
    count_subject,
    decode_probe_count,
    encode_probe_count,
    is_batch_subject,
)


def test_subject_names_match_the_go_project_and_the_config_defaults() -> None:
    settings = Settings()
    assert DEFAULT_SUBJECT == "gons.packets.raw"  # Go2NetSpectra's subject, literally
    assert settings.probe.subject == DEFAULT_SUBJECT
    assert settings.engine.queue_group == DEFAULT_QUEUE_GROUP
    assert batch_subject("a.b") == "a.b.batch"
    assert count_subject("a.b") == "a.b.count"
    assert is_batch_subject(batch_subject(DEFAULT_SUBJECT))
    assert not is_batch_subject(DEFAULT_SUBJECT)
    assert not is_batch_subject(count_subject(DEFAULT_SUBJECT))


def test_count_message_round_trips_and_is_the_documented_json() -> None:
    count = ProbeCount("host-1", 12_345, 678)
    data = encode_probe_count(count)
    assert json.loads(data) == {"probe": "host-1", "packets": 12_345, "messages": 678}
    assert decode_probe_count(data) == count


#: Forged or corrupt count messages, the field their error names, and the reason it is counted under.
BAD_COUNT_MESSAGES = [
    (b"not json", "not JSON", "malformed"),
    (b"\xff\xfe", "not JSON", "malformed"),
    (b"[1, 2]", "list", "malformed"),
    (b'{"packets": 1, "messages": 1}', "'probe'", "malformed"),
    (b'{"probe": "", "packets": 1, "messages": 1}', "'probe'", "malformed"),
    (b'{"probe": 7, "packets": 1, "messages": 1}', "'probe'", "malformed"),
    (b'{"probe": "p", "messages": 1}', "'packets'", "malformed"),
    (b'{"probe": "p", "packets": "12", "messages": 1}', "'packets'", "malformed"),
    (b'{"probe": "p", "packets": true, "messages": 1}', "'packets'", "malformed"),
    (b'{"probe": "p", "packets": 1.5, "messages": 1}', "'packets'", "malformed"),
    (b'{"probe": "p", "packets": 1e308, "messages": 1}', "'packets'", "malformed"),
    (b'{"probe": "p", "packets": 1e999, "messages": 1}', "'packets'", "malformed"),  # inf
    (b'{"probe": "p", "packets": Infinity, "messages": 1}', "'packets'", "malformed"),
    (b'{"probe": "p", "packets": NaN, "messages": 1}', "'packets'", "malformed"),
    (b'{"probe": "p", "packets": 100, "messages": -Infinity}', "'messages'", "malformed"),
    (b'{"probe": "p", "packets": ' + b"9" * 5000 + b', "messages": 1}', "not JSON", "malformed"),
    (b'{"probe": "p", "packets": -1, "messages": 1}', "'packets'", "out_of_range"),
    (b'{"probe": "p", "packets": 1, "messages": -1}', "'messages'", "out_of_range"),
    (b'{"probe": "p", "packets": 1' + b"0" * 308 + b', "messages": 1}', "'packets'", "out_of_range"),
    (
        f'{{"probe": "p", "packets": {MAX_PROBE_COUNT + 1}, "messages": 1}}'.encode(),
        "'packets'",
        "out_of_range",
    ),
    (b'{"probe": "p", "packets": 5, "messages": 6}', "'messages'", "out_of_range"),
    (b'{"probe": "p", "packets": 1}', "'messages'", "malformed"),
]


@pytest.mark.parametrize(("data", "named", "reason"), BAD_COUNT_MESSAGES)
def test_bad_count_messages_are_refused_naming_the_field(data: bytes, named: str, reason: str) -> None:
    with pytest.raises(BadProbeCount, match=named) as raised:
        decode_probe_count(data)
    assert isinstance(raised.value, WireError)
    assert raised.value.reason == reason


def test_the_largest_count_is_accepted() -> None:
    count = ProbeCount("p", MAX_PROBE_COUNT, MAX_PROBE_COUNT)
    assert decode_probe_count(encode_probe_count(count)) == count


async def test_engine_role_reads_what_the_publisher_sends_and_counts_bad_reports() -> None:
    """The probe's real count message reaches the engine's stats; a malformed one is counted, not used."""
    bus = EmbeddedBus()
    settings = Settings()

    class Engine:  # takes the accounting that rides on every snapshot, counts nothing
        async def ingest(self, columns: object, progress: object = None) -> None:
            self.progress = progress

    role = EngineRole(settings, bus, engine=Engine())
    subscription = await bus.subscribe_payloads(count_subject(role.subject), role._on_count)
    publisher = Publisher(bus, settings.probe.subject, probe_id="probe-a")
    publisher.packets, publisher.messages = 41, 41
    await publisher.send_count()
    await bus.publish(count_subject(role.subject), b'{"probe": "probe-b", "packets": "9", "messages": 1}')
    await bus.flush()
    await subscription.drain()
    await role._flush()  # counts are applied where they arrived among the packets: here, none
    assert role.stats.published_by_probe == {"probe-a": 41}
    assert role.stats.bad_count_messages == 1
    assert role.stats.counts.rejects["malformed"] == 1
    await bus.close()

"""The NetFlow/IPFIX/sFlow decoders under faults: every one counted, survived, good records exact.

Datagrams are packed here with struct from the RFC layouts (RFC 3954, RFC 7011, sFlow v5), so
the expected records are the values packed.
"""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest

from netspectra.capture.flows import DatagramBatch, ExportDecoder
from netspectra.capture.flows.netflow import NetFlowDecoder

EXPORTER = "192.0.2.1"
FIELDS_A = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (2, 4), (1, 4)]
FIELDS_B = [(1, 8), (2, 8), (4, 1), (8, 4), (12, 4), (11, 2), (7, 2)]  # the same id, a new layout


def template(version: int, tid: int, fields: list[tuple[int, int]]) -> bytes:
    body = struct.pack("!HH", tid, len(fields)) + b"".join(struct.pack("!HH", *f) for f in fields)
    return struct.pack("!HH", 0 if version == 9 else 2, 4 + len(body)) + body


def record(fields: list[tuple[int, int]], values: dict[int, int]) -> bytes:
    return b"".join(values[fid].to_bytes(length, "big") for fid, length in fields)


def data(tid: int, records: list[bytes]) -> bytes:
    body = b"".join(records)
    return struct.pack("!HH", tid, 4 + len(body)) + body


def message(version: int, seq: int, *sets: bytes) -> bytes:
    body = b"".join(sets)
    if version == 9:
        return struct.pack("!HHIIII", 9, len(sets), 1000, 1_700_000_000, seq, 7) + body
    return struct.pack("!HHIII", 10, 16 + len(body), 1_700_000_000, seq, 7) + body


def values(i: int) -> dict[int, int]:
    return {8: 0x0A000000 + i, 12: 0x0A010000 + i, 7: 1000 + i, 11: 80, 4: 6, 2: i + 1, 1: 100 * (i + 1)}


def decode(decoder: NetFlowDecoder | ExportDecoder, *datagrams: bytes):  # type: ignore[no-untyped-def]
    return decoder.decode(DatagramBatch.from_datagrams((d, EXPORTER, i) for i, d in enumerate(datagrams)))


@pytest.mark.parametrize("version", [9, 10])
def test_a_template_changed_mid_stream_decodes_what_follows_with_the_new_layout(version: int) -> None:
    decoder = NetFlowDecoder()
    first = message(version, 0, template(version, 300, FIELDS_A), data(300, [record(FIELDS_A, values(1))]))
    second = message(version, 1, template(version, 300, FIELDS_B), data(300, [record(FIELDS_B, values(2))]))
    out = decode(decoder, first, second)
    assert out.raw_packets.tolist() == [2, 3] and out.raw_bytes.tolist() == [200, 300]
    assert out.src_port.tolist() == [1001, 1002]
    assert not decoder.stats.malformed


def test_an_exporter_restart_is_a_reset_not_a_loss_and_a_gap_is_counted() -> None:
    decoder = NetFlowDecoder()
    tmpl = template(9, 300, FIELDS_A)
    one = data(300, [record(FIELDS_A, values(0))])
    decode(decoder, message(9, 100, tmpl, one), message(9, 101, one), message(9, 105, one))
    assert decoder.stats.missed_packets == 3  # 102, 103, 104
    decode(decoder, message(9, 0, tmpl, one), message(9, 1, one))  # restarted: numbering from 0
    assert decoder.stats.sequence_resets == 1 and decoder.stats.missed_packets == 3
    ipfix = NetFlowDecoder()
    t10 = template(10, 300, FIELDS_A)
    two = data(300, [record(FIELDS_A, values(0)), record(FIELDS_A, values(1))])
    decode(ipfix, message(10, 0, t10, two), message(10, 2, two), message(10, 9, two))
    assert ipfix.stats.missed_flows == 5  # records 4..8 never arrived
    assert decoder.stats.exporters.as_dict() == {
        EXPORTER: {"datagrams": 5, "records": 5, "missed_packets": 3, "sequence_resets": 1}
    }
    assert ipfix.stats.exporters.as_dict() == {EXPORTER: {"datagrams": 3, "records": 6, "missed_flows": 5}}


def test_v9_numbers_export_packets_whatever_their_records() -> None:
    """RFC 3954: the v9 sequence counts export packets, so datagrams of several records in a row
    (seq 0, 1, 2) are neither a loss nor a restart; one skipped datagram is one missed packet."""
    decoder = NetFlowDecoder()
    three = data(300, [record(FIELDS_A, values(i)) for i in range(3)])
    first = message(9, 0, template(9, 300, FIELDS_A), three)
    out = decode(decoder, first, message(9, 1, three), message(9, 2, three), message(9, 4, three))
    assert len(out) == 12
    assert (decoder.stats.missed_packets, decoder.stats.sequence_resets) == (1, 0)


def test_per_exporter_counters_stay_bounded_under_a_flood_of_addresses() -> None:
    """Without an allow-list every source is an exporter: past the limit they are summed as "other"."""
    decoder = NetFlowDecoder()
    decoder.stats.exporters.limit = 3
    datagram = message(9, 0, template(9, 300, FIELDS_A), data(300, [record(FIELDS_A, values(0))]))
    senders = [f"198.51.100.{k}" for k in range(10)]
    decoder.decode(DatagramBatch.from_datagrams((datagram, a, k) for k, a in enumerate(senders)))
    counts = decoder.stats.exporters.as_dict()
    assert list(counts) == ["198.51.100.0", "198.51.100.1", "198.51.100.2", "other"]
    assert counts["other"] == {"datagrams": 7, "records": 7}
    assert sum(c["records"] for c in counts.values()) == decoder.stats.records == 10


def test_truncated_and_garbage_datagrams_are_counted_and_good_records_stay_exact() -> None:
    rng = random.Random(5)
    good = message(
        10, 0, template(10, 300, FIELDS_A), data(300, [record(FIELDS_A, values(i)) for i in range(5)])
    )
    garbage = [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200))) for _ in range(300)]
    truncated = [good[:cut] for cut in range(0, len(good), 3)]
    # every prefix of a valid message, and random bytes, some starting with a real version
    for prefix in (b"\x00\x05", b"\x00\x09", b"\x00\x0a", b"\x00\x00\x00\x05"):
        garbage += [prefix + g for g in garbage[:50]]
    decoder = ExportDecoder()
    decode(decoder, good, *truncated, *garbage)  # must not raise
    after = decode(decoder, message(10, 1, data(300, [record(FIELDS_A, values(i)) for i in range(5)])))
    assert after.raw_packets.tolist() == [1, 2, 3, 4, 5]
    assert after.src_port.tolist() == [1000, 1001, 1002, 1003, 1004]
    stats = decoder.stats()
    assert sum(stats["netflow"]["malformed"].values()) > 0  # type: ignore[union-attr]
    assert sum(stats["sflow"]["malformed"].values()) > 0  # type: ignore[union-attr]


def test_an_exporter_outside_the_allow_list_is_refused_and_counted() -> None:
    from netspectra.capture.flows.netflow import allow_list

    decoder = NetFlowDecoder(allow=allow_list(["198.51.100.1"]))
    out = decode(decoder, message(9, 0, template(9, 300, FIELDS_A), data(300, [record(FIELDS_A, values(1))])))
    assert len(out) == 0 and decoder.stats.refused == 1 and not decoder.templates


def test_ipfix_withdrawal_removes_the_template() -> None:
    decoder = NetFlowDecoder()
    withdraw = struct.pack("!HH", 2, 8) + struct.pack("!HH", 300, 0)
    decode(decoder, message(10, 0, template(10, 300, FIELDS_A)), message(10, 0, withdraw))
    assert decoder.stats.template_withdrawals == 1 and not decoder.templates
    out = decode(decoder, message(10, 0, data(300, [record(FIELDS_A, values(1))])))
    assert len(out) == 0 and decoder.pending == 1  # held until a template comes again
    assert np.array_equal(
        decode(decoder, message(10, 1, template(10, 300, FIELDS_A))).raw_bytes, np.array([200], np.uint64)
    )

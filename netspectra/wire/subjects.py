"""The NATS subjects probes and engines speak on, and the probe's count message.

One base subject ``S`` (``probe.subject``, Go's ``gons.packets.raw`` by default) names three:

* ``S``: one Go-compatible ``PacketInfo`` per message, consumed in the engines' queue group;
* ``S.batch``: our ``PacketBatch`` extension, same queue group;
* ``S.count``: each probe's cumulative published counts, outside any queue group so every
  engine sees every report and can tell what was lost on the way;
* ``S.flows``: our ``FlowRecordBatch`` extension (proto/v1/flow.proto): records collected from
  NetFlow/IPFIX/sFlow exporters, same queue group.

The probe writes these, the engine role and ``netspectra tail`` read them: keeping the names
and the count format here means a change cannot reach one side only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from netspectra.errors import WireError

#: The Go project's subject; our probes publish here unless told otherwise.
DEFAULT_SUBJECT = "gons.packets.raw"
#: The queue group engines join, so several engines share one stream.
DEFAULT_QUEUE_GROUP = "netspectra-engine"

#: The largest count a probe may report: 2**53 - 1 is the largest integer every JSON reader
#: (JavaScript's doubles included) holds exactly, and 28 years at 10 M packets/s. A count beyond
#: it is forged or corrupt, and would otherwise make the engine's gap absurd.
MAX_PROBE_COUNT = 2**53 - 1

_BATCH_SUFFIX = ".batch"
_COUNT_SUFFIX = ".count"
_FLOWS_SUFFIX = ".flows"


def batch_subject(subject: str) -> str:
    """Where ``PacketBatch`` messages for ``subject`` travel."""
    return subject + _BATCH_SUFFIX


def count_subject(subject: str) -> str:
    """Where probes publishing on ``subject`` report their counts."""
    return subject + _COUNT_SUFFIX


def flows_subject(subject: str) -> str:
    """Where ``FlowRecordBatch`` messages (flow-export records) for ``subject`` travel."""
    return subject + _FLOWS_SUFFIX


def is_flows_subject(subject: str) -> bool:
    """True for a subject carrying ``FlowRecordBatch`` messages."""
    return subject.endswith(_FLOWS_SUFFIX)


def is_batch_subject(subject: str) -> bool:
    """True for a subject carrying ``PacketBatch`` messages (a tail subscriber sees both kinds)."""
    return subject.endswith(_BATCH_SUFFIX)


@dataclass(frozen=True, slots=True)
class ProbeCount:
    """What one probe says it has handed to the bus so far (cumulative, so a lost report costs nothing)."""

    probe: str
    packets: int
    messages: int


def encode_probe_count(count: ProbeCount) -> bytes:
    """The JSON body published on :func:`count_subject`."""
    return json.dumps({"probe": count.probe, "packets": count.packets, "messages": count.messages}).encode()


class BadProbeCount(WireError):
    """A count message that cannot be used; ``reason`` is the key the engine counts it under."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


#: Why a count message is refused, in the engine's stats order: ``malformed`` (not JSON, not an
#: object, a missing field or a wrong type: a string, a bool, a float such as 1e308, inf or nan),
#: ``out_of_range`` (negative, above :data:`MAX_PROBE_COUNT`, more messages than packets),
#: ``decreasing`` (below what the same probe reported before: counts are cumulative).
COUNT_REJECT_REASONS: tuple[str, ...] = ("malformed", "out_of_range", "decreasing")


def decode_probe_count(data: bytes) -> ProbeCount:
    """Parse a count message; raises :class:`BadProbeCount` naming what is wrong.

    Only exact types are accepted (``"12"``, ``true`` or ``12.0`` as a count is an error, not a
    number; JSON's ``1e308``, ``Infinity`` and ``NaN`` are floats): the engine subtracts these
    from what arrived, so a wrong one would report a false gap. Whether a count goes backwards
    is the reader's check (it needs the probe's earlier reports).
    """
    try:
        report = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadProbeCount("malformed", f"probe count message is not JSON: {error}") from error
    if not isinstance(report, dict):
        raise BadProbeCount(
            "malformed", f"probe count message is a JSON {type(report).__name__}, not an object"
        )
    probe = report.get("probe")
    if not isinstance(probe, str) or not probe:
        raise BadProbeCount(
            "malformed", f"probe count message: 'probe' must be a non-empty string, got {probe!r}"
        )
    numbers: dict[str, int] = {}
    for name in ("packets", "messages"):
        value = report.get(name)
        if type(value) is not int:
            raise BadProbeCount(
                "malformed", f"probe count message: {name!r} must be an integer, got {value!r}"
            )
        if not 0 <= value <= MAX_PROBE_COUNT:
            raise BadProbeCount(
                "out_of_range", f"probe count message: {name!r} must be in 0..{MAX_PROBE_COUNT}, got {value}"
            )
        numbers[name] = value
    if numbers["messages"] > numbers["packets"]:  # every message the probe counts carries a packet
        raise BadProbeCount(
            "out_of_range",
            f"probe count message: 'messages' ({numbers['messages']}) above 'packets' ({numbers['packets']})",
        )
    return ProbeCount(probe, numbers["packets"], numbers["messages"])

"""A real sampled export (Akvorado's samplingrate pair, 1-in-2048 per record) per stored flow vs tshark.

tshark decodes the template and the data file twice over (so every flow has two records) and
gives each record's packets, octets and sampling interval; summed per five-tuple, that is the
truth of each flow's raw counts and, times the records' intervals, of its renormalised ones. Our
decoder's records go through the engine's exact table and the embedded store's writer path.
"""

from __future__ import annotations

from pathlib import Path

from netspectra.capture.flows.netflow import NetFlowDecoder
from netspectra.config.models import ExactTaskConfig
from netspectra.engine.exact import ExactGroup
from netspectra.model.fields import FIELD_ORDER
from netspectra.model.flows import FlowColumns
from netspectra.storage.embedded import EmbeddedBackend
from netspectra.storage.rows import snapshot_rows
from netspectra.storage.sql import ensure_schema
from tests.integration.pipeline_helpers import table_flows
from tests.integration.test_flow_corpus import CFLOW_FIELDS, CORPUS, _frames, _tshark, pytestmark

__all__ = ["pytestmark"]
NAMES = ("akvorado-netflow-samplingrate-template.pcap", "akvorado-netflow-samplingrate-data.pcap")
Key = tuple[object, ...]


def tshark_flows(paths: list[Path], tmp_path: Path) -> dict[Key, tuple[int, int, int, int]]:
    """Per five-tuple: (raw packets, raw octets, packets x interval, octets x interval) from tshark."""
    flows: dict[Key, list[int]] = {}
    for frame in _tshark(paths, tmp_path, "cflow", CFLOW_FIELDS):
        records = frame["cflow.packets"]
        if not records:
            continue  # the template frame
        assert not frame["cflow.srcaddrv6"]  # IPv4 records only, so the lists line up
        columns = [frame[name] for name in CFLOW_FIELDS if name not in ("cflow.srcaddrv6", "cflow.dstaddrv6")]
        assert all(len(column) == len(records) for column in columns)
        for src, dst, sport, dport, proto, packets, octets, interval in zip(*columns, strict=True):
            entry = flows.setdefault((src, dst, int(sport), int(dport), int(proto)), [0, 0, 0, 0])
            entry[0] += int(packets)
            entry[1] += int(octets)
            entry[2] += int(packets) * int(interval)
            entry[3] += int(octets) * int(interval)
    return {key: (a, b, c, d) for key, (a, b, c, d) in flows.items()}


async def test_a_sampled_capture_per_flow_equals_tsharks_decode(tmp_path: Path) -> None:
    template, data = (CORPUS / name for name in NAMES)
    paths = [template, data, data]
    want = tshark_flows(paths, tmp_path)
    assert want and all(scaled == raw * 2048 for raw, _, scaled, _ in want.values())

    decoder = NetFlowDecoder()
    records = FlowColumns.concat([decoder.decode(batch) for batch in _frames(paths)])
    assert len(records) == 2 * len(want)  # every flow twice
    group = ExactGroup([ExactTaskConfig(name="five", key_fields=list(FIELD_ORDER))])
    for _label, job in group.insert_flow_jobs(records):
        job()
    snapshot = group.snapshot(taken_at_ns=1_700_000_000 * 10**9, period_start_ns=0)
    (table,) = snapshot.flows
    raw_packets, raw_bytes = table.raw_or_counted()
    got = {
        key: (int(raw_packets[i]), int(raw_bytes[i]), int(table.packets[i]), int(table.bytes[i]))
        for i, key in enumerate(table_flows(table))
    }
    assert got == want

    backend = EmbeddedBackend(str(tmp_path / "store"))
    try:
        await ensure_schema(backend)
        await backend.insert("flow_metrics", snapshot_rows(snapshot, "e1").flows)
        rows = await backend.select(
            "SELECT SrcIP, DstIP, SrcPort, DstPort, Protocol, PacketCount - ExtrapolatedPackets,"
            " ByteCount - ExtrapolatedBytes, PacketCount, ByteCount FROM flow_metrics"
        )
    finally:
        await backend.close()
    stored = {
        (str(s), str(d), int(sp), int(dp), int(pr)): (int(rp), int(rb), int(p), int(b))
        for s, d, sp, dp, pr, rp, rb, p, b in rows
    }
    assert stored == want

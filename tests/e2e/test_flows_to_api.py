"""Corpus exports over real UDP → collector → real nats-server → engine → store → gRPC.

The flow-export path end to end, on both stores (a real clickhouse-server and the embedded chdb
store): the probe role's collector takes the corpus files' datagrams from one loopback address
per exporter, publishes ``FlowRecordBatch`` on the bus, the engine role counts them and its
writer stores the snapshot; the api answers AggregateFlows and TraceFlow over gRPC with
grpcio code compiled from proto/ at test time.

The truth is tshark's decode of the same files, record by record: NetFlow/IPFIX
``cflow.*`` fields (5-tuple, packets, octets, the sampling interval it shows, first/last seen
as it decodes them), sFlow samples' rate and frame length with the sampled header (tshark's
``sflow_245.header`` bytes) decoded by scapy. Per task: packets and bytes times the sampling
rate, and the number of distinct keys; per traced flow: totals and first/last seen in seconds.
The raw counts (as sent: tshark's values before the rate) are answered beside them, per task
and per traced flow, sampled ones of both kinds included.
"""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import socket
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import grpc
import pytest

from netspectra.api.role import ApiRole
from netspectra.app import build_engine
from netspectra.bus.nats import NatsBus
from netspectra.capture.flows.datagrams import read_capture_datagrams
from netspectra.config.models import Settings
from netspectra.engine.role import EngineRole
from netspectra.model.fields import FIELD_ORDER, KeyField
from netspectra.probe.role import ProbeRole
from netspectra.storage.context import StorageContext
from tests.fixtures.nats import NatsServer
from tests.integration.api_serving import store_writer
from tests.integration.pipeline_helpers import start_engine_role, wait_for
from tests.integration.test_flow_corpus import CORPUS

pytestmark = pytest.mark.skipif(
    not CORPUS.is_dir() or shutil.which("tshark") is None or shutil.which("mergecap") is None,
    reason="needs ../shared/corpus/flows, tshark and mergecap",
)
DECODE = [a for port in (2055, 2100, 8096, 9990) for a in ("-d", f"udp.port=={port},cflow")]
TASKS: dict[str, tuple[KeyField, ...]] = {
    "per_src_ip": (KeyField.SRC_IP,),
    "per_dst_port": (KeyField.DST_PORT,),
    "per_protocol": (KeyField.PROTOCOL,),
    "per_five_tuple": FIELD_ORDER,
}
#: Exporters (one loopback address each): NetFlow v5, v9 (with option-data and in-record
#: sampling), IPFIX with absolute times, both address families; then sFlow.
NETFLOW: list[tuple[str, ...]] = [
    ("akvorado-netflow-nfv5.pcap",),
    ("akvorado-netflow-samplingrate-template.pcap", "akvorado-netflow-samplingrate-data.pcap"),
    ("akvorado-netflow-template.pcap", "akvorado-netflow-data.pcap"),
    ("akvorado-netflow-icmp-template.pcap", "akvorado-netflow-icmp-data.pcap"),
    ("akvorado-netflow-physicalinterfaces.pcap",),
    ("akvorado-netflow-data+templates.pcap",),
    ("akvorado-netflow-mpls.pcap",),
]
SFLOW = [
    "akvorado-sflow-data-1140.pcap",
    "tcpdump-sflow_expanded.pcap",
    "akvorado-sflow-data-icmpv4.pcap",
    "akvorado-sflow-data-icmpv6.pcap",
    "akvorado-sflow-data-sflow-ipv4-data.pcap",
]
_NS = 10**9


@dataclass(frozen=True)
class Record:
    """One exported record as tshark (and scapy, for sFlow headers) decode it; counts renormalised,
    and as sent (``raw_*``)."""

    key: tuple[str, str, int, int, int]
    packets: int
    bytes: int
    first_s: int | None  # None: sFlow (arrival time)
    last_s: int | None
    raw_packets: int
    raw_bytes: int


def _tshark_frames(path: Path, fields: list[str], decode: list[str]) -> list[dict[str, list[str]]]:
    command = ["tshark", "-n", "-r", str(path), *decode, "-T", "fields", "-E", "occurrence=a"]
    command += ["-E", "separator=/t", "-E", "aggregator=;"]  # absolute times contain commas
    for name in fields:
        command += ["-e", name]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return [
        {name: (cell.split(";") if cell else []) for name, cell in zip(fields, line.split("\t"), strict=True)}
        for line in out.splitlines()
    ]


def _ns(seconds: str) -> int:
    return int(Decimal(seconds) * _NS)


CFLOW = [
    "cflow.srcaddr", "cflow.dstaddr", "cflow.srcaddrv6", "cflow.dstaddrv6", "cflow.srcport",
    "cflow.dstport", "cflow.protocol", "cflow.packets", "cflow.octets", "cflow.sampling_interval",
    "cflow.sampling_packet_interval", "cflow.sampling_packet_space", "cflow.unix_secs", "cflow.unix_nsecs",
    "cflow.sysuptime", "cflow.timestart", "cflow.timeend", "cflow.abstimestart", "cflow.abstimeend",
]  # fmt: skip


def _per_record(frame: dict[str, list[str]], name: str, count: int, default: str = "0") -> list[str]:
    values = frame[name]
    if not values:
        return [default] * count
    assert len(values) == count, (name, values)
    return values


def _address(v4: str, v6: str) -> str:
    """A template with both families fills one: tshark shows the other as zeros."""
    return v6 if v4 in ("0", "0.0.0.0") and v6 not in ("0", "::") else v4


def _abstime_ns(text: str) -> int:
    # tshark's absolute time: "Jan 24, 2025 17:18:01.621000000 UTC"
    import datetime as dt

    stamp, fraction = text.removesuffix(" UTC").rsplit(".", 1)
    whole = dt.datetime.strptime(" ".join(stamp.split()), "%b %d, %Y %H:%M:%S").replace(tzinfo=dt.UTC)
    return int(whole.timestamp()) * _NS + int(fraction.ljust(9, "0"))


def _netflow_records(paths: list[Path], tmp_path: Path) -> list[Record]:
    """The files are fed to tshark twice and the second pass is read: tshark does not decode data
    that comes before its template in one datagram (we hold it and decode it when the template
    arrives), so only on the second pass does it see every record."""
    merged = tmp_path / "truth.pcap"
    twice = [*map(str, paths), *map(str, paths)]
    subprocess.run(["mergecap", "-F", "pcap", "-a", "-w", str(merged), *twice], check=True)
    frames = _tshark_frames(merged, CFLOW, DECODE)
    records = []
    for frame in frames[len(frames) // 2 :]:
        count = len(frame["cflow.packets"])
        if not count:
            continue
        rate = frame["cflow.sampling_interval"]
        if not rate and frame["cflow.sampling_packet_interval"]:  # IPFIX option data: 1 in (i + s) / i
            interval = int(frame["cflow.sampling_packet_interval"][0])
            space = (
                int(frame["cflow.sampling_packet_space"][0]) if frame["cflow.sampling_packet_space"] else 0
            )
            rate = [str((interval + space) // interval)]
        rates = [max(1, int(r)) for r in (rate if len(rate) == count else [rate[0] if rate else "1"] * count)]
        columns = {name: _per_record(frame, name, count) for name in CFLOW[:9]}
        if frame["cflow.abstimestart"]:  # IPFIX absolute times
            firsts = [_abstime_ns(t) for t in _per_record(frame, "cflow.abstimestart", count)]
            lasts = [_abstime_ns(t) for t in _per_record(frame, "cflow.abstimeend", count)]
        else:  # sysUptime-relative: export time - uptime + the record's start/end
            (secs,) = frame["cflow.unix_secs"]
            nsecs = int(frame["cflow.unix_nsecs"][0]) if frame["cflow.unix_nsecs"] else 0
            (uptime,) = frame["cflow.sysuptime"]
            boot = int(secs) * _NS + nsecs - _ns(uptime)
            firsts = [boot + _ns(t) for t in _per_record(frame, "cflow.timestart", count)]
            lasts = [boot + _ns(t) for t in _per_record(frame, "cflow.timeend", count)]
        for i in range(count):
            key = (
                _address(columns["cflow.srcaddr"][i], columns["cflow.srcaddrv6"][i]),
                _address(columns["cflow.dstaddr"][i], columns["cflow.dstaddrv6"][i]),
                int(columns["cflow.srcport"][i]),
                int(columns["cflow.dstport"][i]),
                int(columns["cflow.protocol"][i]),
            )
            records.append(
                Record(
                    key,
                    int(columns["cflow.packets"][i]) * rates[i],
                    int(columns["cflow.octets"][i]) * rates[i],
                    firsts[i] // _NS,
                    lasts[i] // _NS,
                    int(columns["cflow.packets"][i]),
                    int(columns["cflow.octets"][i]),
                )
            )
    return records


def _sflow_records(path: Path) -> list[Record]:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    fields = ["sflow_245.header", "sflow.flow_sample.sampling_rate", "sflow_245.header.frame_length"]
    records = []
    for frame in _tshark_frames(path, fields, ["-d", "udp.port==6343,sflow"]):
        headers, rates, lengths = (frame[name] for name in fields)
        assert len(headers) == len(rates) == len(lengths)
        for header, rate, length in zip(headers, rates, lengths, strict=True):
            packet = Ether(bytes.fromhex(header.replace(":", "")))
            ip = packet.getlayer(IP) or packet.getlayer(IPv6)
            assert ip is not None, "every sampled header of these files carries IP"
            transport = packet.getlayer(TCP) or packet.getlayer(UDP)
            ports = (int(transport.sport), int(transport.dport)) if transport is not None else (0, 0)
            protocol = int(ip.proto if ip.version == 4 else ip.nh)
            key = (str(ipaddress.ip_address(ip.src)), str(ipaddress.ip_address(ip.dst)), *ports, protocol)
            scale = max(1, int(rate))
            records.append(Record(key, scale, int(length) * scale, None, None, 1, int(length)))
    return records


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _value(record: Record, field: KeyField) -> str | int:
    return record.key[FIELD_ORDER.index(field)]


def _aggregate(records: list[Record], fields: tuple[KeyField, ...]) -> dict[tuple[object, ...], list[int]]:
    """key → [packets, bytes, first_s, last_s, raw packets, raw bytes] (times only from records
    that have them)."""
    out: dict[tuple[object, ...], list[int]] = defaultdict(lambda: [0, 0, 2**62, -1, 0, 0])
    for record in records:
        row = out[tuple(_value(record, f) for f in fields)]
        row[0] += record.packets
        row[1] += record.bytes
        row[4] += record.raw_packets
        row[5] += record.raw_bytes
        if record.first_s is not None and record.last_s is not None:
            row[2] = min(row[2], record.first_s)
            row[3] = max(row[3], record.last_s)
    return dict(out)


@pytest.fixture(params=["embedded", "clickhouse"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> dict:
    return store_writer(request.param, tmp_path, request)


async def test_exports_through_nats_and_the_store_answer_tsharks_totals(
    store: dict, nats_server: NatsServer, tmp_path: Path, official_protos
) -> None:
    netflow_port, sflow_port = _free_udp_port(), _free_udp_port()
    plan = [([CORPUS / n for n in names], netflow_port) for names in NETFLOW]
    plan += [([CORPUS / name], sflow_port) for name in SFLOW]
    settings = Settings.model_validate(
        {
            "probe": {
                "nats_url": nats_server.url,
                "source": "netflow",
                "listen": [f"127.0.0.1:{netflow_port}", f"127.0.0.1:{sflow_port}"],
                "flows": {"allow": [f"127.0.0.{10 + k}" for k in range(len(plan))]},
            },
            "engine": {"flush_interval": 0.02, "stats_interval": 1.0},
            "aggregator": {
                "types": ["exact"],
                "exact": {
                    "writers": [{**store, "snapshot_interval": "1h"}],
                    "tasks": [{"name": n, "key_fields": [f.value for f in fs]} for n, fs in TASKS.items()],
                },
            },
            "api": {"grpc_listen_addr": "127.0.0.1:0", "http_listen_addr": "127.0.0.1:0"},
        }
    )
    records: list[Record] = []
    for paths, port in plan:
        records += _sflow_records(paths[0]) if port == sflow_port else _netflow_records(paths, tmp_path)

    context = StorageContext()
    engine_bus, probe_bus = NatsBus(nats_server.url), NatsBus(nats_server.url)
    engine_role = EngineRole(settings, engine_bus, build_engine(settings, context))
    probe_role = ProbeRole(settings, probe_bus)
    engine_stop, probe_stop = asyncio.Event(), asyncio.Event()
    engine_task = await start_engine_role(engine_role, engine_stop)
    probe_task = asyncio.create_task(probe_role.serve(probe_stop))
    senders: list[socket.socket] = []
    try:
        await wait_for(lambda: len(getattr(probe_role.source, "bound", [])) == 2, timeout=60)
        sent = 0
        for k, (paths, port) in enumerate(plan):
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sender.bind((f"127.0.0.{10 + k}", 0))
            senders.append(sender)
            for path in paths:
                for datagram in read_capture_datagrams(path):
                    sender.sendto(datagram.payload, ("127.0.0.1", port))
                    sent += 1
            # one exporter at a time, so each file's templates come before its data as captured
            await wait_for(lambda sent=sent: probe_role.source.stats()["datagrams"] >= sent, timeout=120)  # type: ignore[misc, union-attr]
        await wait_for(lambda: engine_role.stats.flow_records >= probe_role.flow_records > 0, timeout=120)
    finally:
        probe_stop.set()
        await probe_task
        engine_stop.set()
        await engine_task  # the engine's close writes the final snapshot
        for sender in senders:
            sender.close()
        await probe_bus.close()
        await engine_bus.close()
    assert probe_role.flow_records == len(records)
    assert engine_role.stats.flow_rejects == {}

    truth = {task: _aggregate(records, fields) for task, fields in TASKS.items()}
    five = truth["per_five_tuple"]
    # a few flows of each kind: the largest v5/v9/IPFIX flows (first/last from the export) and an sFlow one
    timed = sorted((k for k, v in five.items() if v[3] >= 0), key=lambda k: -five[k][0])[:4]
    untimed = [k for k, v in five.items() if v[3] < 0][:1]
    # and sampled flows of both kinds (renormalised != raw): their raw counts are answered too
    timed += [k for k, v in five.items() if v[3] >= 0 and v[0] != v[4] and k not in timed][:2]
    untimed += [k for k, v in five.items() if v[3] < 0 and v[0] != v[4] and k not in untimed][:2]
    pb, pb_grpc = official_protos.query_pb2, official_protos.query_pb2_grpc

    def ask(address: str):
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.QueryServiceStub(channel)
            aggregates = {
                task: stub.AggregateFlows(pb.AggregationRequest(task_name=task), timeout=60).summaries
                for task in TASKS
            }
            traces = [
                stub.TraceFlow(
                    pb.TraceFlowRequest(
                        task_name="per_five_tuple",
                        flow_keys={f.value: str(v) for f, v in zip(FIELD_ORDER, key, strict=True)},
                    ),
                    timeout=60,
                ).lifecycle
                for key in [*timed, *untimed]
            ]
        return aggregates, traces

    api = ApiRole(settings, context)
    stop = asyncio.Event()
    serving = asyncio.create_task(api.serve(stop))
    try:
        await asyncio.wait_for(api.ready.wait(), 60)
        aggregates, traces = await asyncio.to_thread(ask, f"127.0.0.1:{api.grpc_port}")
    finally:
        stop.set()
        await serving
        await context.close()

    want_packets = sum(r.packets for r in records)
    want_bytes = sum(r.bytes for r in records)
    want_raw = (sum(r.raw_packets for r in records), sum(r.raw_bytes for r in records))
    assert want_raw != (want_packets, want_bytes)  # sampled input: the raw check can fail
    for task in TASKS:
        [row] = aggregates[task]
        assert (row.task_name, row.total_packets, row.total_bytes, row.flow_count) == (
            task,
            want_packets,
            want_bytes,
            len(truth[task]),
        ), task
        assert row.HasField("raw") and (row.raw.packets, row.raw.bytes) == want_raw, task
    assert any(five[key][0] != five[key][4] for key in timed) and any(
        five[key][0] != five[key][4] for key in untimed
    )
    for key, lifecycle in zip([*timed, *untimed], traces, strict=True):
        packets, nbytes, first, last, raw_packets, raw_bytes = five[key]
        assert (lifecycle.total_packets, lifecycle.total_bytes) == (packets, nbytes), key
        # raw is set only when it differs from the totals (sampled): unset means raw = total
        raw = (lifecycle.raw.packets, lifecycle.raw.bytes) if lifecycle.HasField("raw") else (packets, nbytes)
        assert raw == (raw_packets, raw_bytes), key
        assert lifecycle.HasField("raw") == ((raw_packets, raw_bytes) != (packets, nbytes)), key
        if last >= 0:
            assert (lifecycle.first_seen.seconds, lifecycle.last_seen.seconds) == (first, last), key
        else:  # sFlow carries no time: first = last = arrival, within this test's run
            assert lifecycle.first_seen.seconds <= lifecycle.last_seen.seconds, key

"""Prometheus self-metrics: the numbers the stats log lines print, read at scrape time.

Why a collector and not counters on the hot path: packets are counted in numba batches and the
roles already keep exact tallies (:class:`~netspectra.probe.publisher.Publisher`, the bus's
:class:`~netspectra.bus.base.BusStats`, :class:`~netspectra.engine.role.EngineRoleStats`, the
engine's :class:`~netspectra.engine.engine.EngineStats`, each writer's
:class:`~netspectra.model.writer.WriterStats`). :class:`RoleCollector` reads those objects when
Prometheus scrapes, so ``/metrics`` and the log lines can never disagree and no packet pays for a
second count. Only durations are observed as they happen, once per batch, snapshot or query
(:class:`Telemetry`'s histograms).

Where it is served: a process with the api role answers ``GET /metrics`` on ``api.http_listen_addr``
(behind the api's bearer token); any other process on ``metrics.listen_addr`` (loopback by default;
empty turns it off). Names and labels: docs/metrics.md.

This is a top module (like ``app``): it reads every role's stats, and only the composition root
imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from netspectra.model.writer import WriterStats

logger = logging.getLogger(__name__)

#: Seconds: from a small batch's kernel run (~100 µs) to a slow store's insert (tens of seconds).
_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
)

#: Content type of :meth:`Telemetry.exposition`.
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Telemetry:
    """The process's registry: the histograms roles observe into, and the collector over ``roles``.

    ``roles`` is read at every scrape (role name → the role object as the composition root built
    it), so roles built after this object, or rebuilt, are seen as they are now.
    """

    content_type = CONTENT_TYPE

    def __init__(self, roles: Callable[[], Mapping[str, Any]] = dict) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.batch_seconds = Histogram(
            "netspectra_engine_batch_seconds",
            "Time one gathered batch spends in a batch kernel: stage=decode (wire bytes to columns) "
            "or stage=count (every task of every group).",
            ["role", "stage"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.write_seconds = Histogram(
            "netspectra_snapshot_write_seconds",
            "Time a writer takes to accept one snapshot (file writers: written; store writers: "
            "durable in the spool, inserted in the background).",
            ["role", "group", "writer"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.query_seconds = Histogram(
            "netspectra_api_query_seconds",
            "Time the api takes to answer one query, by RPC (gRPC and the console's HTTP JSON alike).",
            ["role", "rpc"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(RoleCollector(roles))

    def observe_batch(self, stage: str, seconds: float) -> None:
        self.batch_seconds.labels("engine", stage).observe(seconds)

    def observe_query(self, rpc: str, seconds: float) -> None:
        self.query_seconds.labels("api", rpc).observe(seconds)

    def timed_writer(self, group: str, label: str, writer: Any) -> TimedWriter:
        return TimedWriter(writer, self.write_seconds.labels("engine", group, label).observe)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)


class TimedWriter:
    """A snapshot writer that reports how long each ``write`` took; everything else passes through.

    ``__getattr__`` forwards ``start``, ``stats``, ``flush`` and any other attribute, so the engine
    sees the writer it was given (its ``getattr(writer, "start", None)`` still finds what exists).
    """

    def __init__(self, writer: Any, observe: Callable[[float], None]) -> None:
        self.wrapped = writer
        self._observe = observe

    async def write(self, snapshot: Any) -> None:
        began = time.perf_counter()
        try:
            await self.wrapped.write(snapshot)
        finally:
            self._observe(time.perf_counter() - began)

    async def close(self) -> None:
        await self.wrapped.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


def _counter(name: str, documentation: str, labels: list[str]) -> CounterMetricFamily:
    # prometheus_client appends _total to a counter family's samples itself
    return CounterMetricFamily(name.removesuffix("_total"), documentation, labels=labels)


class RoleCollector:
    """Reads the roles' own stats objects at scrape time (see the module docstring)."""

    def __init__(self, roles: Callable[[], Mapping[str, Any]]) -> None:
        self._roles = roles

    def describe(self) -> list[Metric]:
        return []  # families depend on the roles present; auto_describe is off

    def collect(self) -> Iterator[Metric]:
        roles = dict(self._roles())
        try:
            if "probe" in roles:
                yield from _probe_metrics(roles["probe"])
            if "engine" in roles:
                yield from _engine_role_metrics(roles["engine"])
                yield from _engine_metrics(roles["engine"].engine)
            buses: dict[int, tuple[str, Any]] = {}
            for name in ("probe", "engine"):
                bus = getattr(roles.get(name), "bus", None)
                if bus is not None and id(bus) not in buses:
                    buses[id(bus)] = (name, bus)
            yield from _bus_metrics(list(buses.values()))
        except Exception:  # a scrape must never take a role down; say what broke
            logger.exception("Collecting metrics failed; this scrape is partial")


def _probe_metrics(probe: Any) -> Iterator[Metric]:
    publisher = probe.publisher
    source_stats: dict[str, int] = probe.source.stats() if probe.source is not None else {}
    labels = ["role"]
    captured = _counter(
        "netspectra_probe_captured_packets_total", "Packets the capture source parsed.", labels
    )
    captured.add_metric(["probe"], source_stats.get("packets", 0))
    yield captured
    drops = _counter(
        "netspectra_probe_capture_dropped_packets_total",
        "Packets lost before the probe saw them: source=kernel (AF_PACKET ring) or dumpcap.",
        ["role", "source"],
    )
    drops.add_metric(["probe", "kernel"], source_stats.get("kernel_drops", 0))
    drops.add_metric(["probe", "dumpcap"], source_stats.get("dumpcap_dropped", 0))
    yield drops
    skipped = _counter(
        "netspectra_probe_skipped_packets_total",
        "Frames the parser skipped, by reason (not IP, truncated, ...).",
        ["role", "reason"],
    )
    for key, value in sorted(source_stats.items()):
        if key.startswith("skipped_"):
            skipped.add_metric(["probe", key.removeprefix("skipped_")], value)
    yield skipped
    published = _counter(
        "netspectra_probe_published_packets_total", "Packets the bus accepted from this probe.", labels
    )
    published.add_metric(["probe"], publisher.packets)
    yield published
    messages = _counter(
        "netspectra_probe_published_messages_total", "Messages the bus accepted from this probe.", labels
    )
    messages.add_metric(["probe"], publisher.messages)
    yield messages
    refused = _counter(
        "netspectra_probe_bus_refused_packets_total",
        "Packets lost because the bus refused their publish (disconnected, buffer full).",
        labels,
    )
    refused.add_metric(["probe"], publisher.failed_packets)
    yield refused
    decoder = getattr(probe.source, "decoder", None)
    if decoder is not None and hasattr(decoder, "netflow"):  # a flow-export collector
        yield from _collector_metrics(probe, decoder)
    persistence = probe.persistence
    if persistence is not None:
        persisted = _counter(
            "netspectra_probe_persisted_packets_total", "Packets written to the capture files.", labels
        )
        persisted.add_metric(["probe"], persistence.written)
        yield persisted
        lost = _counter(
            "netspectra_probe_persist_dropped_packets_total",
            "Packets dropped from persistence (never from publishing).",
            labels,
        )
        lost.add_metric(["probe"], persistence.dropped)
        yield lost


def _collector_metrics(probe: Any, decoder: Any) -> Iterator[Metric]:
    """The flow-export collector's counters (``ExportDecoder.stats()``; docs/flow-export.md)."""
    source = probe.source
    if hasattr(source, "kernel_drops"):
        kernel = _counter(
            "netspectra_collector_kernel_dropped_datagrams_total",
            "Export datagrams the kernel dropped because the collector's socket receive buffer was full"
            " (SO_RXQ_OVFL and /proc/net/udp drops): lost before any decoder saw them.",
            ["role"],
        )
        kernel.add_metric(["probe"], source.kernel_drops())
        yield kernel
        oversize = _counter(
            "netspectra_collector_oversize_datagrams_total",
            "Export datagrams longer than a receive slot (9216 bytes), cut by the kernel and skipped.",
            ["role"],
        )
        oversize.add_metric(["probe"], source.oversize_datagrams())
        yield oversize
        buffer = GaugeMetricFamily(
            "netspectra_collector_receive_buffer_bytes",
            "Socket receive buffer the kernel granted, per listen socket (probe.flows.receive_buffer asked).",
            labels=["role", "listen"],
        )
        for (host, port), size in zip(source.bound, source.granted_buffers, strict=False):
            buffer.add_metric(["probe", f"{host}:{port}"], size)
        yield buffer
    netflow, sflow = decoder.netflow.stats, decoder.sflow.stats
    by_protocol = [("netflow", netflow), ("sflow", sflow)]
    datagrams = _counter(
        "netspectra_collector_datagrams_total",
        "Export datagrams the collector decoded (protocol=netflow: v5/v9/IPFIX; sflow), refused included.",
        ["role", "protocol"],
    )
    records = _counter(
        "netspectra_collector_records_total",
        "Flow records decoded (sFlow: flow samples with a key).",
        ["role", "protocol"],
    )
    refused = _counter(
        "netspectra_collector_refused_datagrams_total",
        "Export datagrams from an exporter outside probe.flows.allow.",
        ["role", "protocol"],
    )
    malformed = _counter(
        "netspectra_collector_malformed_datagrams_total",
        "Export datagrams skipped (from the bad point on), by reason.",
        ["role", "protocol", "reason"],
    )
    resets = _counter(
        "netspectra_collector_sequence_resets_total",
        "Sequence numbers that went backwards (an exporter restart, not a loss).",
        ["role", "protocol"],
    )
    for protocol, stats in by_protocol:
        datagrams.add_metric(["probe", protocol], stats.datagrams)
        records.add_metric(["probe", protocol], stats.records)
        refused.add_metric(["probe", protocol], stats.refused)
        resets.add_metric(["probe", protocol], stats.sequence_resets)
        for reason, count in sorted(stats.malformed.items()):
            if count:
                malformed.add_metric(["probe", protocol, reason], count)
    yield from (datagrams, records, refused, malformed, resets)
    missed = _counter(
        "netspectra_collector_missed_export_packets_total",
        "Export datagrams lost by sequence (NetFlow v9, sFlow).",
        ["role", "protocol"],
    )
    missed.add_metric(["probe", "netflow"], netflow.missed_packets)
    missed.add_metric(["probe", "sflow"], sflow.missed_packets)
    yield missed
    missed_flows = _counter(
        "netspectra_collector_missed_flows_total",
        "Flow records lost by sequence (NetFlow v5, IPFIX).",
        ["role"],
    )
    missed_flows.add_metric(["probe"], netflow.missed_flows)
    yield missed_flows
    held = _counter(
        "netspectra_collector_template_pending_total",
        "Data sets that came before their template: state=held, decoded (the template came), expired.",
        ["role", "state"],
    )
    for state in ("held", "decoded", "expired"):
        held.add_metric(["probe", state], getattr(netflow, f"pending_{state}"))
    yield held
    waiting = GaugeMetricFamily(
        "netspectra_collector_template_pending",
        "Data sets waiting for their template now.",
        labels=["role"],
    )
    waiting.add_metric(["probe"], decoder.netflow.pending)
    yield waiting
    samples = _counter(
        "netspectra_collector_sflow_samples_total",
        "sFlow samples by kind (flow, counter, discarded, unknown).",
        ["role", "kind"],
    )
    for kind, value in (
        ("flow", sflow.flow_samples),
        ("counter", sflow.counter_samples),
        ("discarded", sflow.discarded_samples),
        ("unknown", sflow.unknown_samples),
    ):
        samples.add_metric(["probe", kind], value)
    yield samples
    skips = _counter(
        "netspectra_collector_sflow_header_skips_total",
        "Sampled headers the packet parser refused, by reason.",
        ["role", "reason"],
    )
    for reason, count in sorted(sflow.header_skips.items()):
        skips.add_metric(["probe", reason], count)
    yield skips
    per_exporter = {
        name: _counter(
            f"netspectra_collector_exporter_{name}_total",
            f"Per exporter (sFlow: agent address; past {netflow.exporters.limit} exporters the rest "
            f'are summed as exporter="other"): {text}.',
            ["role", "protocol", "exporter"],
        )
        for name, text in (
            ("datagrams", "export datagrams accepted"),
            ("records", "flow records decoded"),
            ("missed_packets", "export datagrams lost by sequence"),
            ("missed_flows", "flow records lost by sequence"),
            ("sequence_resets", "sequence resets (restarts)"),
            ("raw_packets", "packets as the exporter sent them (sampled, not renormalised)"),
            ("raw_bytes", "bytes as the exporter sent them (sampled, not renormalised)"),
            ("packets", "packets renormalised by the sampling rate (what the engine counts)"),
            ("bytes", "bytes renormalised by the sampling rate (what the engine counts)"),
        )
    }
    for protocol, stats in by_protocol:
        for exporter, counts in stats.exporters.as_dict().items():
            for name, family in per_exporter.items():
                if name in counts:
                    family.add_metric(["probe", protocol, exporter], counts[name])
    yield from per_exporter.values()
    published = _counter(
        "netspectra_probe_published_flow_records_total",
        "Flow records the bus accepted from this probe (FlowRecordBatch on <subject>.flows).",
        ["role"],
    )
    published.add_metric(["probe"], probe.flow_records)
    yield published
    lost = _counter(
        "netspectra_probe_bus_refused_flow_records_total",
        "Flow records lost because the bus refused their publish.",
        ["role"],
    )
    lost.add_metric(["probe"], probe.flow_records_failed)
    yield lost


def _bus_metrics(buses: list[tuple[str, Any]]) -> Iterator[Metric]:
    if not buses:
        return
    families = {
        "dropped": _counter(
            "netspectra_bus_slow_consumer_dropped_messages_total",
            "Messages the bus client dropped for a full pending queue (slow consumer).",
            ["role"],
        ),
        "no_subscriber": _counter(
            "netspectra_bus_unheard_messages_total",
            "Messages published where nobody listened (embedded bus only).",
            ["role"],
        ),
        "publish_failed": _counter(
            "netspectra_bus_publish_refused_messages_total", "Publishes the bus refused.", ["role"]
        ),
        "disconnects": _counter("netspectra_bus_disconnects_total", "Lost bus connections.", ["role"]),
        "reconnects": _counter("netspectra_bus_reconnects_total", "Bus reconnections.", ["role"]),
    }
    errors = _counter(
        "netspectra_bus_errors_total", "Errors the bus client reported, by kind.", ["role", "kind"]
    )
    for role, bus in buses:
        stats = bus.stats
        for attribute, family in families.items():
            family.add_metric([role], getattr(stats, attribute))
        for kind, count in sorted(stats.errors.items()):
            errors.add_metric([role, kind], count)
    yield from families.values()
    yield errors


def _engine_role_metrics(role: Any) -> Iterator[Metric]:
    stats = role.stats
    received = _counter(
        "netspectra_engine_received_messages_total",
        "Messages the engine took from the bus: kind=info (one PacketInfo) or batch (PacketBatch).",
        ["role", "kind"],
    )
    received.add_metric(["engine", "info"], stats.messages)
    received.add_metric(["engine", "batch"], stats.batch_messages)
    yield received
    decoded = _counter(
        "netspectra_engine_received_packets_total", "Packets decoded from the bus and counted.", ["role"]
    )
    decoded.add_metric(["engine"], stats.packets)
    yield decoded
    rejected = _counter(
        "netspectra_engine_rejected_packets_total",
        "Packets the decoder refused, by reason (malformed, impossible values).",
        ["role", "reason"],
    )
    for reason, count in stats.rejects.items():
        rejected.add_metric(["engine", reason], count)
    yield rejected
    dropped = _counter(
        "netspectra_engine_pending_dropped_messages_total",
        "Messages refused because the engine was a whole pending limit behind (kind=info or batch).",
        ["role", "kind"],
    )
    dropped.add_metric(["engine", "info"], stats.dropped)
    dropped.add_metric(["engine", "batch"], stats.dropped_batches)
    yield dropped
    bad = _counter(
        "netspectra_engine_refused_count_messages_total",
        "Probe count messages refused, by reason.",
        ["role", "reason"],
    )
    for reason, count in stats.counts.rejects.items():
        bad.add_metric(["engine", reason], count)
    yield bad
    published = stats.published
    if published is not None:
        reported = GaugeMetricFamily(
            "netspectra_engine_probe_published_packets",
            "Packets the probes report having published (latest count messages, summed).",
            labels=["role"],
        )
        reported.add_metric(["engine"], published)
        yield reported
    gap = stats.gap
    if gap is not None:
        family = GaugeMetricFamily(
            "netspectra_engine_gap_packets",
            "Packets published since each probe's first count that had not arrived by its latest count.",
            labels=["role"],
        )
        family.add_metric(["engine"], gap)
        yield family
    unseen = GaugeMetricFamily(
        "netspectra_engine_unseen_packets",
        "Packets published before this engine heard from their probe that never arrived.",
        labels=["role"],
    )
    unseen.add_metric(["engine"], stats.counts.before_first_count)
    yield unseen


def _engine_metrics(engine: Any) -> Iterator[Metric]:
    totals = engine.stats
    for name, value, text in (
        ("netspectra_engine_counted_packets_total", totals.packets, "Packets counted by every task."),
        ("netspectra_engine_counted_bytes_total", totals.bytes, "Bytes counted by every task."),
        ("netspectra_engine_batches_total", totals.batches, "Batches counted."),
    ):
        family = _counter(name, text, ["role"])
        family.add_metric(["engine"], value)
        yield family
    counted = _counter(
        "netspectra_task_counted_packets_total",
        "Packets counted by each running task (every batch reaches every running task).",
        ["role", "group", "task"],
    )
    flows = GaugeMetricFamily(
        "netspectra_task_flows",
        "Flows an exact task holds in the current period (read between kernel runs: may be a batch behind).",
        labels=["role", "task"],
    )
    memory = GaugeMetricFamily(
        "netspectra_task_memory_bytes",
        "Memory a task's table or sketch holds.",
        labels=["role", "group", "task"],
    )
    for group_name, group in engine.groups.items():
        for table in getattr(group, "tables", ()):
            counted.add_metric(["engine", group_name, table.task], totals.packets)
            flows.add_metric(["engine", table.task], len(table))
            memory.add_metric(["engine", group_name, table.task], table.nbytes)
        for task in getattr(group, "tasks", ()):
            counted.add_metric(["engine", group_name, task.name], totals.packets)
            memory.add_metric(["engine", group_name, task.name], int(task.sketch.memory_bytes))
    yield counted
    yield flows
    yield memory
    yield from _writer_metrics(engine.writer_slots)


def _writer_metrics(slots: list[Any]) -> Iterator[Metric]:
    labels = ["role", "group", "writer"]
    accepted = _counter(
        "netspectra_snapshots_accepted_total", "Snapshots a writer accepted from the engine.", labels
    )
    stored = _counter("netspectra_snapshots_stored_total", "Snapshots a store writer inserted.", labels)
    failed = _counter(
        "netspectra_snapshots_failed_total",
        "Failed snapshot writes (spool writes, inserts, writer errors).",
        labels,
    )
    dropped = _counter(
        "netspectra_snapshots_dropped_total", "Snapshots a store writer dropped for memory.", labels
    )
    skipped = _counter(
        "netspectra_snapshots_replaced_total",
        "Waiting snapshots replaced by a newer one of the same period (writer slower than its interval).",
        labels,
    )
    rows = _counter("netspectra_store_rows_inserted_total", "Rows a store writer inserted.", labels)
    depth = GaugeMetricFamily(
        "netspectra_spool_snapshots", "Snapshots accepted but not yet in the store.", labels=labels
    )
    memory_only = GaugeMetricFamily(
        "netspectra_spool_memory_only_snapshots",
        "Queued snapshots the spool could not write to disk (held in memory only).",
        labels=labels,
    )
    for slot in slots:
        key = ["engine", slot.group, slot.label]
        writer = slot.writer
        own: Any = getattr(writer, "stats", None)
        accepted.add_metric(key, slot.written)
        skipped.add_metric(key, slot.skipped)
        if isinstance(own, WriterStats):
            stored.add_metric(key, own.stored)
            failed.add_metric(key, own.failed + slot.failed)
            dropped.add_metric(key, own.dropped)
            depth.add_metric(key, own.queued)
            memory_only.add_metric(key, own.memory_only)
            rows.add_metric(key, getattr(writer, "rows_inserted", 0))
        else:
            failed.add_metric(key, slot.failed)
    yield from (accepted, stored, failed, dropped, skipped, rows, depth, memory_only)


class MetricsServer:
    """``GET /metrics`` on its own port, for a process without the api role; nothing else.

    On the event loop, not prometheus_client's thread server: a scrape then reads the roles' stats
    between their steps, never in the middle of one. Requests are bounded (head ≤ 8 KiB, read
    within :data:`_IDLE_S`), one per connection.
    """

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str | None, port: int) -> None:
        self._server = await asyncio.start_server(self._connection, host, port, limit=8192)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _IDLE_S)
            except TimeoutError:
                return
            method, _, rest = head.decode("latin-1").partition(" ")
            path = rest.partition(" ")[0].split("?", 1)[0]
            if method == "GET" and path == "/metrics":
                status, content_type, body = "200 OK", CONTENT_TYPE, self.telemetry.exposition()
            else:
                status, content_type, body = (
                    "404 Not Found",
                    "text/plain",
                    b"only GET /metrics is served here\n",
                )
            writer.write(
                (
                    f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                ).encode("latin-1")
                + body
            )
            await writer.drain()
        except (
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
            TimeoutError,
        ):
            pass  # the client went away or sent something that is not a request
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


_IDLE_S = 30.0

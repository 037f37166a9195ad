"""The read side: typed queries over either backend, with request values validated first.

Validation happens here, before any SQL runs, because ClickHouse 18.16 rejects comparing a
UInt8/UInt16 column with a string: flow-key values are parsed to ints (ports, protocol) or
normalised address text, and unknown key names are refused with the list of valid ones.
Empty results are told apart from unknown tasks so the API can answer NOT_FOUND.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from netspectra.errors import QueryError, StorageError, UnknownTaskError
from netspectra.model.fields import FIELD_ORDER, KeyField
from netspectra.model.snapshot import HitterKind
from netspectra.storage import sql
from netspectra.storage.sql import SqlBackend
from netspectra.storage.states import SketchStateReader

DEFAULT_HITTER_LIMIT = 10
MAX_HITTER_LIMIT = 10_000
_DECIMAL = re.compile(r"[0-9]{1,20}")
_FIELD_NAMES = {field.value.lower(): field for field in KeyField}


def parse_address(text: str, what: str) -> str:
    """Address text as stored (dotted IPv4, compressed IPv6); QueryError when malformed."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        raise QueryError(f"{what} {text[:64]!r} is not an IPv4 or IPv6 address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def parse_number(value: str | int, what: str, maximum: int) -> int:
    """An integer in 0..maximum from text or int; QueryError otherwise."""
    if isinstance(value, str):
        text = value.strip()
        # ASCII digits only, few of them: str.isdigit() accepts '²' (int() does not) and int()
        # refuses more than 4300 digits; either escaped as an internal error.
        if not _DECIMAL.fullmatch(text):
            raise QueryError(f"{what} {value[:64]!r} is not a number in 0..{maximum}")
        value = int(text)
    if not 0 <= value <= maximum:
        raise QueryError(f"{what} {value} is out of range 0..{maximum}")
    return value


def parse_field_value(field: KeyField, value: str | int) -> str | int:
    """One flow-key value in its column type."""
    if field in (KeyField.SRC_IP, KeyField.DST_IP):
        return parse_address(str(value), field.value)
    return parse_number(value, field.value, 255 if field is KeyField.PROTOCOL else 65_535)


def parse_flow_keys(keys: Mapping[str, str]) -> dict[KeyField, str | int]:
    """``{"SrcIP": "1.2.3.4", "DstPort": "443"}`` → typed values; names are case-insensitive."""
    if not keys:
        raise QueryError(f"flow_keys is empty; give at least one of {', '.join(FIELD_ORDER)}")
    parsed: dict[KeyField, str | int] = {}
    for name, value in keys.items():
        field = _FIELD_NAMES.get(name.strip().lower())
        if field is None:
            raise QueryError(f"unknown flow key {name[:64]!r}; valid keys: {', '.join(FIELD_ORDER)}")
        parsed[field] = parse_field_value(field, value)
    return parsed


@dataclass(frozen=True, slots=True)
class FlowFilter:
    """AggregateFlows' optional filters; None means "any"."""

    task: str | None = None
    end: int | None = None  # epoch seconds, inclusive
    start: int | None = None  # epoch seconds, exclusive: rows stamped at start are its baseline
    src_ip: str | None = None
    dst_ip: str | None = None
    src_port: int | None = None
    dst_port: int | None = None
    protocol: int | None = None


@dataclass(frozen=True, slots=True)
class TaskTotals:
    """``total_*`` are renormalised (estimates of the real traffic); ``raw_*`` as the exporters sent
    them (the same for packets captured; None where a read has none: the alerter's). The raw
    counts are left out of ``==`` so an answer compares with Go's four fields; compare them apart."""

    task: str
    total_bytes: int
    total_packets: int
    flow_count: int
    raw_bytes: int | None = dataclasses.field(default=None, compare=False)
    raw_packets: int | None = dataclasses.field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class FlowTrace:
    """As :class:`TaskTotals`: ``packets``/``bytes`` renormalised, ``raw_*`` as sent."""

    first_seen: int  # epoch seconds
    last_seen: int
    packets: int
    bytes: int
    flows: int
    raw_packets: int | None = dataclasses.field(default=None, compare=False)
    raw_bytes: int | None = dataclasses.field(default=None, compare=False)


def check_window(start: int | None, end: int | None) -> None:
    """QueryError when a window ends before it starts (an empty window is allowed: it is empty)."""
    if start is not None and end is not None and start > end:
        raise QueryError(f"start_time ({start} s) is after end_time ({end} s); a window needs start <= end")


@dataclass(frozen=True, slots=True)
class TopFlow:
    """One flow of a top-talkers answer; None for a key field the task does not key on."""

    src_ip: str | None
    dst_ip: str | None
    src_port: int | None
    dst_port: int | None
    protocol: int | None
    packets: int
    bytes: int
    first_seen: int  # epoch seconds
    last_seen: int


def _totals(*row: Any) -> TaskTotals:
    """One row of the AggregateFlows queries: task, bytes, packets, flows, raw bytes, raw packets."""
    task, total_bytes, packets, flows, raw_bytes, raw_packets = row
    return TaskTotals(str(task), int(total_bytes), int(packets), int(flows), int(raw_bytes), int(raw_packets))


def _needs_history(latest: Any, collided: Any, end: int | None) -> bool:
    """True when flow_latest cannot give the answer: a newest row after ``end`` or a FlowKey collision."""
    return bool(int(collided)) or (end is not None and int(latest) > end)


class QueryStore:
    """Queries over one store; ``known_tasks`` (configured names → kind) complements stored names."""

    def __init__(self, backend: SqlBackend, *, description: str) -> None:
        self.backend = backend
        self.description = description
        self._schema_ready = False
        #: the sketch-state reader (merges engines and epochs; keeps decoded states)
        binary = self._select_binary if isinstance(backend, sql.BinarySelect) else None
        self.states = SketchStateReader(self._select, select_binary=binary)

    async def _select(self, text: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        if not self._schema_ready:
            await sql.ensure_schema(self.backend)  # a fresh store answers "no data", not an error
            self._schema_ready = True
        try:
            return await self.backend.select(text, params)
        except StorageError:
            self._schema_ready = False
            raise

    async def _select_binary(
        self, text: str, params: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """:meth:`_select` with String columns as bytes (the backend is a :class:`sql.BinarySelect`)."""
        backend = self.backend
        assert isinstance(backend, sql.BinarySelect)
        if not self._schema_ready:
            await sql.ensure_schema(self.backend)
            self._schema_ready = True
        try:
            return await backend.select_binary(text, params)
        except StorageError:
            self._schema_ready = False
            raise

    async def ping(self) -> None:
        """Raises StorageError when the store cannot answer."""
        await self.backend.select(sql.PING)

    async def tasks(self) -> dict[str, str]:
        """Stored task names → "exact" or "sketch" (in name order)."""
        rows = await self._select(sql.TASKS)
        return {name: kind for name, kind in sorted(rows)}

    async def require_task(self, task: str, also_known: Mapping[str, str] = {}) -> None:
        """UnknownTaskError unless ``task`` is stored or configured."""
        if task in also_known or task in await self.tasks():
            return
        raise UnknownTaskError(f"unknown task {task[:128]!r}; list tasks with SearchTasks")

    async def aggregate_flows(self, query: FlowFilter) -> list[TaskTotals]:
        """Per task: packets and bytes summed over every flow and engine, and the distinct flows.

        Without a start: the latest row (≤ end) of every flow and EngineId, summed (Go's meaning).
        Answered from flow_latest (~one row per flow) unless that table cannot: a matching flow's
        newest row is later than ``end``, or two flows share a hash. Then from flow_metrics, the
        same query over every snapshot's row. With a start: what was counted in (start, end], from
        flow_metrics (see sql's "windows" and docs/storage-and-api.md).
        """
        check_window(query.start, query.end)
        params: dict[str, Any] = {}
        for name, value in (
            ("task", query.task),
            ("end", query.end),
            ("SrcIP", query.src_ip),
            ("DstIP", query.dst_ip),
            ("SrcPort", query.src_port),
            ("DstPort", query.dst_port),
            ("Protocol", query.protocol),
        ):
            if value is not None:
                params[name] = value
        if query.start is not None:
            text = sql.WINDOW_AGGREGATE_FLOWS.replace("{where}", sql.flow_where(list(params)))
            rows = await self._select(text, {**params, "start": query.start})
            return [_totals(*row) for row in rows]
        latest_params = {name: value for name, value in params.items() if name != "end"}
        text = sql.LATEST_AGGREGATE_FLOWS.replace("{where}", sql.flow_where(list(latest_params)))
        rows = await self._select(text, latest_params)
        if not any(_needs_history(latest, collided, query.end) for *_, latest, collided in rows):
            return [_totals(*row[:-2]) for row in rows]
        text = sql.AGGREGATE_FLOWS.replace("{where}", sql.flow_where(list(params)))
        return [_totals(*row) for row in await self._select(text, params)]

    async def trace_flow(
        self, task: str, keys: Mapping[KeyField, str | int], end: int | None, start: int | None = None
    ) -> FlowTrace | None:
        """First/last seen and totals of the flow(s) matching ``keys``; None if none.

        Without a start: the latest row (≤ end) of each flow and EngineId, from flow_latest when it
        can answer, else from flow_metrics (as :meth:`aggregate_flows`). With a start: what was
        counted in (start, end]; first seen is the first packet if the flow began in the window,
        else the window's start (it was already active; snapshots do not record when it sent next).
        """
        check_window(start, end)
        params: dict[str, Any] = {"task": task}
        for field in FIELD_ORDER:
            if field in keys:
                params[field.value] = keys[field]
        if start is not None:
            if end is not None:
                params["end"] = end
            text = sql.WINDOW_TRACE_FLOW.replace("{where}", sql.flow_where(list(params)))
            rows = await self._select(text, {**params, "start": start})
            count, first, last, packets, total_bytes, raw_packets, raw_bytes = rows[0] if rows else (0,) * 7
        else:
            text = sql.LATEST_TRACE_FLOW.replace("{where}", sql.flow_where(list(params)))
            rows = await self._select(text, params)
            count, first, last, packets, total_bytes, raw_packets, raw_bytes, latest, collided = (
                rows[0] if rows else (0,) * 9
            )
            if _needs_history(latest, collided, end):
                if end is not None:
                    params["end"] = end
                text = sql.TRACE_FLOW.replace("{where}", sql.flow_where(list(params)))
                rows = await self._select(text, params)
                count, first, last, packets, total_bytes, raw_packets, raw_bytes = (
                    rows[0] if rows else (0,) * 7
                )
        if int(count) == 0:
            return None
        counts = (int(packets), int(total_bytes), int(count), int(raw_packets), int(raw_bytes))
        return FlowTrace(int(first), int(last), *counts)

    async def heavy_hitters(
        self, task: str, kind: HitterKind, limit: int, end: int | None, start: int | None = None
    ) -> list[tuple[str, int]]:
        """The ``limit`` largest hitters of ``task``, from the merged states of every engine and of
        every epoch in the window (Timestamp in (start, end]); see :mod:`netspectra.storage.states`.

        Without ``start``: each engine's current period (Go's meaning). Tasks with no stored states
        (Go2NetSpectra's rows) and a non-mergeable algorithm on one engine are answered from the
        heavy_hitters rows, as before; a non-mergeable one over several engines or a window raises
        :class:`MergeRefusedError` naming why.
        """
        if start is not None and end is not None and start >= end:
            raise QueryError(f"start_time ({start}) must be before end_time ({end})")
        answer = await self.states.heavy_hitters(task, kind, limit, end, start)
        if answer is not None:
            return answer
        return await self._hitter_rows(task, kind, limit, end)

    async def _hitter_rows(
        self, task: str, kind: HitterKind, limit: int, end: int | None
    ) -> list[tuple[str, int]]:
        """Go's rows: latest value of every reported flow per engine, summed (spread: max)."""
        params: dict[str, Any] = {"task": task, "type": int(kind), "limit": limit}
        if end is not None:
            params["end"] = end
        text = sql.heavy_hitters_sql(spread=kind is HitterKind.SPREAD, bounded=end is not None)
        return [(str(flow), int(value)) for flow, value in await self._select(text, params)]

    async def task_series(self, task: str, start: int, end: int) -> list[tuple[int, int, int]]:
        """(snapshot second, packets, bytes) of ``task``: at each snapshot second in (start, end]
        where anything was counted, the total counted since ``start`` by every engine.

        The window answer of :meth:`aggregate_flows` for (start, t] at each t, so a panel's line
        neither depends on how many engines counted nor on which flows a snapshot wrote.
        """
        check_window(start, end)
        params = {"task": task, "end": end}
        text = sql.WINDOW_TASK_INCREMENTS.replace("{where}", sql.flow_where(list(params)))
        series: list[tuple[int, int, int]] = []
        packets = total_bytes = 0
        for at, added_packets, added_bytes in await self._select(text, {**params, "start": start}):
            packets += int(added_packets)
            total_bytes += int(added_bytes)
            series.append((int(at), packets, total_bytes))
        return series

    async def top_flows(
        self, query: FlowFilter, *, start: int | None, limit: int, by: str = "packets"
    ) -> list[TopFlow]:
        """The ``limit`` largest flows of ``query.task`` (required), by packets or bytes.

        Without a start: each flow's latest row ≤ end (what :meth:`aggregate_flows` sums). With a
        start: what each flow counted in (start, end], by the same increments as the window answer
        of :meth:`aggregate_flows`. Flows with nothing counted are left out; from flow_metrics.
        """
        check_window(start, query.end)
        if query.task is None:
            raise QueryError("top flows need a task")
        if by not in ("packets", "bytes"):
            raise QueryError(f"order by {by[:32]!r}: 'packets' or 'bytes'")
        params: dict[str, Any] = {"start": start or 0, "limit": limit}
        for name, value in (
            ("task", query.task),
            ("end", query.end),
            ("SrcIP", query.src_ip),
            ("DstIP", query.dst_ip),
            ("SrcPort", query.src_port),
            ("DstPort", query.dst_port),
            ("Protocol", query.protocol),
        ):
            if value is not None:
                params[name] = value
        present = [name for name in params if name not in ("start", "limit")]
        queries = sql.TOP_FLOWS_BY if start is None else sql.TOP_WINDOW_FLOWS_BY
        text = queries[by.capitalize()].replace("{where}", sql.flow_where(present))
        return [
            TopFlow(
                None if src is None else str(src),
                None if dst is None else str(dst),
                None if sport is None else int(sport),
                None if dport is None else int(dport),
                None if proto is None else int(proto),
                int(packets),
                int(total_bytes),
                int(first),
                int(last),
            )
            for src, dst, sport, dport, proto, packets, total_bytes, first, last in await self._select(
                text, params
            )
        ]

    # --- the current period (the alerter's reads; see sql.CURRENT_FLOWS_BY) --------------------

    async def current_flows(
        self, task: str, *, by: str, limit: int, since: int
    ) -> list[tuple[dict[str, str], int, int]]:
        """(key fields as text, packets, bytes) of ``task``'s largest flows by ``by`` ("packets" or
        "bytes") in each engine's running period (engines heard from since ``since``), summed over engines."""
        rows = await self._select(sql.CURRENT_FLOWS_BY[by], {"task": task, "limit": limit, "since": since})
        flows = []
        for *fields, packets, total_bytes in rows:
            keys = {
                field.value: str(value)
                for field, value in zip(FIELD_ORDER, fields, strict=True)
                if value is not None
            }
            flows.append((keys, int(packets), int(total_bytes)))
        return flows

    async def current_totals(self, task: str, *, since: int) -> TaskTotals:
        """``task``'s packets, bytes and flows in each engine's running period, summed over engines."""
        rows = await self._select(sql.CURRENT_TOTALS, {"task": task, "since": since})
        packets, total_bytes, flows = rows[0] if rows else (0, 0, 0)
        return TaskTotals(task, int(total_bytes or 0), int(packets or 0), int(flows or 0))

    async def current_data_time(
        self, task: str, *, since: int, group: str = "exact", lapse: int = 30
    ) -> int | None:
        """How current the store's answers of ``task`` are (epoch seconds): the time up to which
        every live engine heard from since ``since`` has stored its counts (the oldest of their
        newest snapshots of ``group``; an engine whose lease was released or silent for ``lapse``
        seconds counts no more: its rows are final). 0 while a live engine has stored no snapshot
        yet (it restarted: what it counted meanwhile is not in); None when no engine in view
        records its snapshots (Go's writers, older versions): the store cannot tell.
        """
        query = sql.SKETCH_DATA_TIMES if group == "sketch" else sql.ENGINE_DATA_TIMES
        rows = await self._select(query, {"task": task, "since": since, "group": group, "lapse": lapse})
        marked = [int(at) for _, at, _ in rows if int(at)]
        if not marked:
            return None
        live = [int(at) for _, at, alive in rows if int(alive)]
        return min(live) if live else max(marked)

    async def current_hitters(
        self, task: str, kind: HitterKind, *, limit: int, since: int
    ) -> list[tuple[str, int]]:
        """Hitters of ``task`` reported since ``since``, merged as :meth:`heavy_hitters` merges them."""
        text = sql.CURRENT_HITTERS.format(combine="max" if kind is HitterKind.SPREAD else "sum")
        params = {"task": task, "type": int(kind), "limit": limit, "since": since}
        return [(str(flow), int(value)) for flow, value in await self._select(text, params)]

    async def close(self) -> None:
        """The backend is shared through the StorageContext, which closes it."""

"""``v1.QueryService``: request validation, the store call, and the status code of every failure.

Errors map to gRPC codes in one place (:func:`status_for`): a bad request is INVALID_ARGUMENT, an
unknown task NOT_FOUND, an unreachable store UNAVAILABLE, a store refusing our credentials
FAILED_PRECONDITION (a configuration fault: waiting does not help); a store rejecting our query
and anything else is our bug, logged here with its traceback and answered INTERNAL with a
one-line message. A client never sees a traceback or the store's own text.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime

from grpclib import GRPCError
from grpclib.const import Status

from netspectra.api import alerts as alert_view
from netspectra.api.guard import check_task_name, log_storage_error
from netspectra.errors import (
    MergeRefusedError,
    QueryError,
    StorageAuthError,
    StorageError,
    StorageRefusedError,
    UnknownTaskError,
)
from netspectra.model.snapshot import HitterKind
from netspectra.storage.query import (
    DEFAULT_HITTER_LIMIT,
    MAX_HITTER_LIMIT,
    FlowFilter,
    QueryStore,
    parse_address,
    parse_flow_keys,
    parse_number,
)
from netspectra.wire.generated import v1

logger = logging.getLogger(__name__)


def status_for(error: Exception) -> tuple[Status, str]:
    """The gRPC status and message a client sees for ``error``."""
    if isinstance(error, UnknownTaskError):
        return Status.NOT_FOUND, str(error)
    if isinstance(error, QueryError):
        return Status.INVALID_ARGUMENT, str(error)
    if isinstance(error, MergeRefusedError):
        return Status.FAILED_PRECONDITION, str(error)
    if isinstance(error, StorageRefusedError):
        return Status.INTERNAL, "internal error: the store rejected a query; see the server log"
    if isinstance(error, StorageAuthError):
        return Status.FAILED_PRECONDITION, "the store refused the api's credentials; see the server log"
    if isinstance(error, StorageError):
        return Status.UNAVAILABLE, "the store is unreachable; try again later (details in the server log)"
    return Status.INTERNAL, f"internal error ({type(error).__name__}); see the server log"


@contextlib.asynccontextmanager
async def answering(method: str) -> AsyncIterator[None]:
    """Turn our exceptions into a GRPCError with the right status."""
    try:
        yield
    except GRPCError:
        raise
    except Exception as error:
        status, message = status_for(error)
        if isinstance(error, StorageError):
            log_storage_error(method, error)
        elif status is Status.INTERNAL:
            logger.exception("%s failed", method)
        else:
            logger.info("%s: %s: %s", method, status.name, message)
        raise GRPCError(status, message) from None


def epoch_seconds(stamp: object | None, what: str = "end_time") -> int | None:
    """A protobuf Timestamp (betterproto2 gives a datetime or a message) → epoch seconds.

    None if unset or the epoch itself (Go clients send a zero Timestamp for "no bound"); before
    1970 is INVALID_ARGUMENT (no row is older, and treating it as "no bound" answered a question
    nobody asked). Past 2106 (ClickHouse DateTime's end) it is the end of time.
    """
    if stamp is None:
        return None
    if isinstance(stamp, datetime):
        moment = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
        seconds = int(moment.timestamp())
    else:
        seconds = int(getattr(stamp, "seconds", 0))
    if seconds < 0:
        raise QueryError(f"{what} is before 1970-01-01 ({seconds} s); leave it unset for no bound")
    if seconds == 0:
        return None
    return min(seconds, 0xFFFFFFFF)


def raw_counts(
    raw_packets: int | None, raw_bytes: int | None, total_packets: int, total_bytes: int
) -> v1.RawCounts | None:
    """The answer's raw (as sent) counts, set only when they differ from the totals (the answer
    counted sampled flow-export input): an unsampled answer's message is byte for byte Go's."""
    if raw_packets is None or raw_bytes is None or (raw_packets, raw_bytes) == (total_packets, total_bytes):
        return None
    return v1.RawCounts(packets=raw_packets, bytes=raw_bytes)


def timestamp(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class QueryService(v1.QueryServiceBase):
    """The Go project's query service, same method paths; ``configured`` = task name → kind."""

    def __init__(
        self,
        store: QueryStore,
        configured: Mapping[str, str],
        alerts: alert_view.AlertSource | None = None,
    ) -> None:
        self.store = store
        self.configured = dict(configured)
        self.alerts = alerts

    async def _known(self, task: str) -> None:
        await self.store.require_task(task, self.configured)

    async def health_check(self, message: v1.HealthCheckRequest) -> v1.HealthCheckResponse:
        async with answering("HealthCheck"):
            await self.store.ping()
            return v1.HealthCheckResponse(status="ok")

    async def search_tasks(self, message: v1.SearchTasksRequest) -> v1.SearchTasksResponse:
        async with answering("SearchTasks"):
            kinds = dict(self.configured)
            for name, kind in (await self.store.tasks()).items():
                kinds.setdefault(name, kind)
            names = list(kinds)
            return v1.SearchTasksResponse(task_names=names, task_kinds=[kinds[n] for n in names])

    async def aggregate_flows(self, message: v1.AggregationRequest) -> v1.QueryTotalCountsResponse:
        async with answering("AggregateFlows"):
            query = FlowFilter(
                task=check_task_name(message.task_name) or None,
                end=epoch_seconds(message.end_time),
                start=epoch_seconds(message.start_time, "start_time"),
                src_ip=parse_address(message.src_ip, "src_ip") if message.src_ip else None,
                dst_ip=parse_address(message.dst_ip, "dst_ip") if message.dst_ip else None,
                src_port=parse_number(message.src_port, "src_port", 65_535) or None,
                dst_port=parse_number(message.dst_port, "dst_port", 65_535) or None,
                protocol=parse_number(message.protocol, "protocol", 255) or None,
            )
            totals = await self.store.aggregate_flows(query)
            if not totals and query.task is not None:
                await self._known(query.task)
            return v1.QueryTotalCountsResponse(
                summaries=[
                    v1.TaskSummary(
                        task_name=t.task,
                        total_bytes=t.total_bytes,
                        total_packets=t.total_packets,
                        flow_count=t.flow_count,
                        raw=raw_counts(t.raw_packets, t.raw_bytes, t.total_packets, t.total_bytes),
                    )
                    for t in totals
                ]
            )

    async def trace_flow(self, message: v1.TraceFlowRequest) -> v1.TraceFlowResponse:
        async with answering("TraceFlow"):
            if not message.task_name:
                raise QueryError("task_name is required")
            check_task_name(message.task_name)
            keys = parse_flow_keys(dict(message.flow_keys))
            trace = await self.store.trace_flow(
                message.task_name,
                keys,
                epoch_seconds(message.end_time),
                epoch_seconds(message.start_time, "start_time"),
            )
            if trace is None:
                await self._known(message.task_name)
                raise GRPCError(
                    Status.NOT_FOUND,
                    f"no flow of task {message.task_name!r} matches {dict(message.flow_keys)}",
                )
            return v1.TraceFlowResponse(
                lifecycle=v1.FlowLifecycle(
                    first_seen=timestamp(trace.first_seen),
                    last_seen=timestamp(trace.last_seen),
                    total_packets=trace.packets,
                    total_bytes=trace.bytes,
                    raw=raw_counts(trace.raw_packets, trace.raw_bytes, trace.packets, trace.bytes),
                )
            )

    async def query_heavy_hitters(self, message: v1.HeavyHittersRequest) -> v1.HeavyHittersResponse:
        async with answering("QueryHeavyHitters"):
            if not message.task_name:
                raise QueryError("task_name is required")
            check_task_name(message.task_name)
            if message.type not in tuple(HitterKind):
                raise QueryError(f"type {message.type} is unknown; 0 = count, 1 = size, 2 = spread")
            if message.limit < 0 or message.limit > MAX_HITTER_LIMIT:
                raise QueryError(
                    f"limit {message.limit} is out of range 1..{MAX_HITTER_LIMIT} "
                    f"(0 = {DEFAULT_HITTER_LIMIT})"
                )
            limit = message.limit or DEFAULT_HITTER_LIMIT
            hitters = await self.store.heavy_hitters(
                message.task_name,
                HitterKind(message.type),
                limit,
                epoch_seconds(message.end_time),
                epoch_seconds(message.start_time, "start_time"),
            )
            if not hitters:
                await self._known(message.task_name)
            return v1.HeavyHittersResponse(hitters=[v1.HeavyHitter(flow=f, value=v) for f, v in hitters])

    async def list_alerts(self, message: v1.ListAlertsRequest) -> v1.ListAlertsResponse:
        """NetSpectra extension: the alerter's alerts (FAILED_PRECONDITION when no alerter is set up)."""
        async with answering("ListAlerts"):
            if self.alerts is None:
                raise GRPCError(Status.FAILED_PRECONDITION, "alerting is off: set alerter.enabled and rules")
            chosen = alert_view.select(self.alerts, message.state, message.rule, message.limit)
            return v1.ListAlertsResponse(alerts=[alert_view.to_message(alert) for alert in chosen])

"""Query latency per RPC: :class:`QueryService` with each method timed, for /metrics.

A subclass rather than a hook inside the service: the service stays what the gRPC tests exercise,
and the console, which calls the same methods, is timed by the same code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from netspectra.api.service import QueryService
from netspectra.storage.query import QueryStore
from netspectra.wire.generated import v1


class TimedQueryService(QueryService):
    """Reports ``(rpc name, seconds)`` of every call, answered or failed, to ``observe``."""

    def __init__(
        self,
        store: QueryStore,
        configured: Mapping[str, str],
        observe: Callable[[str, float], None],
        alerts: Any = None,
    ) -> None:
        super().__init__(store, configured, alerts)
        self._observe = observe

    async def _timed(self, rpc: str, call: Any, message: Any) -> Any:
        began = time.perf_counter()
        try:
            return await call(message)
        finally:
            self._observe(rpc, time.perf_counter() - began)

    async def health_check(self, message: v1.HealthCheckRequest) -> v1.HealthCheckResponse:
        return await self._timed("HealthCheck", super().health_check, message)  # type: ignore[no-any-return]

    async def search_tasks(self, message: v1.SearchTasksRequest) -> v1.SearchTasksResponse:
        return await self._timed("SearchTasks", super().search_tasks, message)  # type: ignore[no-any-return]

    async def aggregate_flows(self, message: v1.AggregationRequest) -> v1.QueryTotalCountsResponse:
        return await self._timed("AggregateFlows", super().aggregate_flows, message)  # type: ignore[no-any-return]

    async def trace_flow(self, message: v1.TraceFlowRequest) -> v1.TraceFlowResponse:
        return await self._timed("TraceFlow", super().trace_flow, message)  # type: ignore[no-any-return]

    async def query_heavy_hitters(self, message: v1.HeavyHittersRequest) -> v1.HeavyHittersResponse:
        return await self._timed("QueryHeavyHitters", super().query_heavy_hitters, message)  # type: ignore[no-any-return]

    async def list_alerts(self, message: v1.ListAlertsRequest) -> v1.ListAlertsResponse:
        return await self._timed("ListAlerts", super().list_alerts, message)  # type: ignore[no-any-return]

"""The web console and its HTTP JSON, on the api's HTTP port beside the Grafana endpoints.

One code path: every answer that the gRPC API also gives (tasks, totals, heavy hitters, flow
trace) is computed by calling the same :class:`~netspectra.api.service.QueryService` method with
the same request message, so validation, windows (``start_time``/``end_time``) and errors are
the gRPC side's; the console adds two reads of the same :class:`QueryStore` (traffic over time,
top talkers of an exact task). The JSON is documented in docs/console.md and kept stable.

Routes (added to :class:`GrafanaHandler`'s, which keep their meaning):

* ``GET /`` from a browser (``Accept: text/html``): the page; anything else still gets Grafana's
  health answer. ``GET /console/<file>``: the page's script, styles and the vendored uPlot,
  shipped inside the package (no CDN, no build step). Neither carries data nor needs the token.
* ``GET /metrics``: Prometheus self-metrics (behind the bearer token when one is set).
* ``POST /api/v1/<name>`` (JSON body, ``Content-Type: application/json``): the console's queries.

Security is the gRPC side's: the same bearer token (the page asks for it and keeps it in the
tab's sessionStorage; none is ever written into a page), TLS when configured, every parameter
validated by the server. A page from another origin is refused as on the Grafana routes; the
console's own page calls with its own origin, which is allowed.
"""

from __future__ import annotations

import ipaddress
import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from grpclib import GRPCError
from grpclib.const import Status

from netspectra.api.guard import bearer_token_matches, check_task_name
from netspectra.api.http import GrafanaHandler, HttpError, RawBody, parse_json
from netspectra.api.service import QueryService
from netspectra.errors import QueryError, UnknownTaskError
from netspectra.storage.query import DEFAULT_HITTER_LIMIT, FlowFilter, QueryStore, parse_address, parse_number
from netspectra.wire.generated import v1

#: HTTP status for each gRPC status the service raises (the same mapping grpc-gateway uses).
HTTP_STATUS = {
    Status.INVALID_ARGUMENT: 400,
    Status.NOT_FOUND: 404,
    Status.FAILED_PRECONDITION: 503,
    Status.UNAVAILABLE: 503,
    Status.INTERNAL: 500,
}
MAX_TOP = 1000
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
#: Only our own files run on the page: no inline script, nothing from elsewhere.
_PAGE_HEADERS = [
    (
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-cache"),
]
_STATIC = "console_static"


def static_files() -> dict[str, bytes]:
    """The console's files as shipped in the package (read once, at start-up)."""
    folder = resources.files("netspectra.api").joinpath(_STATIC)
    return {entry.name: entry.read_bytes() for entry in folder.iterdir() if entry.is_file()}


def _seconds(value: Any, what: str) -> int | None:
    """An epoch-seconds bound from the JSON (int, or null/absent for none)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
        raise HttpError(400, f"{what} must be epoch seconds (an integer in 0..4294967295) or null")
    return value or None


def _stamp(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _text(request: Mapping[str, Any], name: str, *, required: bool = False) -> str:
    value = request.get(name, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise HttpError(400, f"{name} must be a string")
    if required and not value:
        raise HttpError(400, f"{name} is required")
    return value.strip()


def _number(request: Mapping[str, Any], name: str, maximum: int) -> int:
    value = request.get(name)
    if value in (None, ""):
        return 0
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise HttpError(400, f"{name} must be a number in 0..{maximum}")
    return parse_number(value, name, maximum)


def rates(points: list[tuple[int, int, int]]) -> list[dict[str, float | int]]:
    """Per-second packets and bytes between consecutive snapshots of cumulative counters.

    A counter that went down was reset by a new period: the later value is all of that interval.
    """
    out: list[dict[str, float | int]] = []
    for (t0, p0, b0), (t1, p1, b1) in itertools.pairwise(points):
        seconds = t1 - t0
        if seconds <= 0:
            continue
        packets = p1 - p0 if p1 >= p0 else p1
        sizes = b1 - b0 if b1 >= b0 else b1
        out.append({"time": t1, "packets_per_s": packets / seconds, "bytes_per_s": sizes / seconds})
    return out


class ConsoleHandler(GrafanaHandler):
    """Grafana's endpoints plus the console's (see the module docstring)."""

    def __init__(
        self,
        store: QueryStore,
        configured: dict[str, str],
        auth_token: str | None = None,
        *,
        service: QueryService,
        cors_origins: tuple[str, ...] = (),
        max_targets: int = 100,
        metrics: Callable[[], tuple[str, bytes]] | None = None,
        snapshot_interval_s: float | None = None,
        observe: Callable[[str, float], None] | None = None,
        alerts: Any = None,
    ) -> None:
        super().__init__(
            store,
            configured,
            auth_token,
            cors_origins=cors_origins,
            max_targets=max_targets,
            alerts=alerts,
        )
        self.service = service
        self.metrics = metrics
        self.snapshot_interval_s = snapshot_interval_s
        self.observe = observe
        self.files = static_files()
        self.routes: dict[str, Callable[[dict[str, Any]], Any]] = {
            "status": self._status,
            "tasks": self._tasks,
            "totals": self._totals,
            "series": self._series,
            "top": self._top,
            "hitters": self._hitters,
            "trace": self._trace,
            "alerts": self._alerts,
        }

    async def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, list[tuple[str, str]]]:
        route = path.split("?", 1)[0]
        if route == "/" and method == "GET" and "text/html" in headers.get("accept", ""):
            return 200, RawBody(_CONTENT_TYPES[".html"], self.files["index.html"]), _PAGE_HEADERS
        if route.startswith("/console/") and method == "GET":
            name = route.removeprefix("/console/")
            data = self.files.get(name)
            suffix = name[name.rfind(".") :] if "." in name else ""
            if data is None or suffix not in _CONTENT_TYPES:
                raise HttpError(404, f"no console file {name[:64]!r}")
            return 200, RawBody(_CONTENT_TYPES[suffix], data), _PAGE_HEADERS
        if route == "/metrics" and method == "GET" and self.metrics is not None:
            self._authorise(headers)
            content_type, data = self.metrics()
            return 200, RawBody(content_type, data), []
        if route.startswith("/api/v1/"):
            return await self._api(method, route.removeprefix("/api/v1/"), headers, body)
        return await super().handle(method, path, headers, body)

    def _authorise(self, headers: dict[str, str]) -> None:
        if self.auth_token and not bearer_token_matches(headers.get("authorization"), self.auth_token):
            raise HttpError(401, "missing or wrong bearer token", [("WWW-Authenticate", "Bearer")])

    def _check_console_origin(self, headers: dict[str, str]) -> None:
        """Our own page or an allowed origin; other pages are refused.

        "Our own page" is an Origin equal to the Host the browser addressed, and only for an IP
        address or ``localhost``: under a DNS name a page could rebind that name to this host
        (DNS rebinding) and read flows through the user's browser. A console served under a
        name is listed in ``api.cors_origins``.
        """
        origin = headers.get("origin")
        if origin is None or origin.lower() in self.cors_origins:
            return
        host = headers.get("host", "").lower()
        if origin.partition("://")[2].lower() == host and _is_address(host):
            return
        raise HttpError(
            403, f"origin {origin[:128]!r} is not allowed; list it in api.cors_origins to serve it"
        )

    async def _api(
        self, method: str, name: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, list[tuple[str, str]]]:
        action = self.routes.get(name)
        if action is None:
            raise HttpError(404, f"no console query {name[:64]!r}; queries: {', '.join(self.routes)}")
        self._check_console_origin(headers)
        if method != "POST":
            raise HttpError(405, f"/api/v1/{name} answers POST", [("Allow", "POST")])
        self._authorise(headers)
        if headers.get("content-type", "").split(";", 1)[0].strip().lower() != "application/json":
            raise HttpError(415, "a POST body must be sent as Content-Type: application/json")
        request = parse_json(body or b"{}", "the body")
        if not isinstance(request, dict):
            raise HttpError(400, "the body must be a JSON object")
        began = time.perf_counter()
        try:
            return 200, await action(request), [("Cache-Control", "no-store")]
        except GRPCError as error:
            raise HttpError(HTTP_STATUS.get(error.status, 500), str(error.message)) from None
        except UnknownTaskError as error:
            raise HttpError(404, str(error)) from None
        except QueryError as error:
            raise HttpError(400, str(error)) from None
        finally:
            if self.observe is not None:
                self.observe(f"console/{name}", time.perf_counter() - began)

    # --- the queries ------------------------------------------------------------------------

    async def _status(self, request: dict[str, Any]) -> dict[str, Any]:
        stored = await self.store.tasks()
        return {
            "now": int(time.time()),
            "stored_tasks": len(stored),
            "snapshot_interval_s": self.snapshot_interval_s,
            "alerting": (
                {"configured": True, "message": ""}
                if self.service.alerts is not None
                else {"configured": False, "message": "alerting is not configured"}
            ),
        }

    async def _alerts(self, request: dict[str, Any]) -> dict[str, Any]:
        """ListAlerts through the one QueryService (state, rule and limit validated there)."""
        limit = request.get("limit", 0)
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise HttpError(400, "limit must be an integer")
        message = v1.ListAlertsRequest(
            state=_text(request, "state"), rule=_text(request, "rule"), limit=limit
        )
        answer = await self.service.list_alerts(message)
        return {
            "alerts": [
                {
                    "id": alert.id,
                    "rule": alert.rule,
                    "key": alert.key,
                    "task": alert.task_name,
                    "metric": alert.metric,
                    "severity": alert.severity,
                    "status": alert.status,
                    "value": alert.value,
                    "bound": alert.bound,
                    "condition": alert.condition,
                    "labels": dict(alert.labels),
                    "pending_since": _optional_epoch(alert.pending_since),
                    "fired_at": _optional_epoch(alert.fired_at),
                    "resolved_at": _optional_epoch(alert.resolved_at),
                }
                for alert in answer.alerts
            ]
        }

    async def _tasks(self, request: dict[str, Any]) -> dict[str, Any]:
        answer = await self.service.search_tasks(v1.SearchTasksRequest())
        return {
            "tasks": [
                {"name": name, "kind": kind}
                for name, kind in zip(answer.task_names, answer.task_kinds, strict=True)
            ]
        }

    def _window(self, request: dict[str, Any]) -> tuple[int | None, int | None]:
        start, end = _seconds(request.get("start"), "start"), _seconds(request.get("end"), "end")
        if start is not None and end is not None and start > end:
            raise HttpError(400, f"start {start} is after end {end}")
        return start, end

    async def _totals(self, request: dict[str, Any]) -> dict[str, Any]:
        start, end = self._window(request)
        message = v1.AggregationRequest(
            task_name=_text(request, "task"),
            end_time=_stamp(end),
            start_time=_stamp(start),
            src_ip=_text(request, "src_ip"),
            dst_ip=_text(request, "dst_ip"),
            src_port=_number(request, "src_port", 65_535),
            dst_port=_number(request, "dst_port", 65_535),
            protocol=_number(request, "protocol", 255),
        )
        answer = await self.service.aggregate_flows(message)
        return {
            "totals": [
                {
                    "task": summary.task_name,
                    "packets": summary.total_packets,
                    "bytes": summary.total_bytes,
                    "flows": summary.flow_count,
                }
                for summary in answer.summaries
            ]
        }

    async def _series(self, request: dict[str, Any]) -> dict[str, Any]:
        task = check_task_name(_text(request, "task", required=True))
        start, end = self._window(request)
        await self.store.require_task(task, self.configured)
        points = await self.store.task_series(task, start or 0, 0xFFFFFFFF if end is None else end)
        return {
            "task": task,
            "points": [{"time": at, "packets": p, "bytes": b} for at, p, b in points],
            "rates": rates(points),
        }

    async def _top(self, request: dict[str, Any]) -> dict[str, Any]:
        task = check_task_name(_text(request, "task", required=True))
        start, end = self._window(request)
        limit = _number(request, "limit", MAX_TOP) or 10
        by = _text(request, "by") or "packets"
        src, dst = _text(request, "src_ip"), _text(request, "dst_ip")
        query = FlowFilter(
            task=task,
            end=end,
            src_ip=parse_address(src, "src_ip") if src else None,
            dst_ip=parse_address(dst, "dst_ip") if dst else None,
            src_port=_number(request, "src_port", 65_535) or None,
            dst_port=_number(request, "dst_port", 65_535) or None,
            protocol=_number(request, "protocol", 255) or None,
        )
        flows = await self.store.top_flows(query, start=start, limit=limit, by=by)
        if not flows:
            await self.store.require_task(task, self.configured)
        return {"task": task, "by": by, "flows": [asdict(flow) for flow in flows]}

    async def _hitters(self, request: dict[str, Any]) -> dict[str, Any]:
        start, end = self._window(request)
        kind = request.get("type", 0)
        if isinstance(kind, bool) or not isinstance(kind, int):
            raise HttpError(400, "type must be 0 (count), 1 (size) or 2 (spread)")
        message = v1.HeavyHittersRequest(
            task_name=_text(request, "task", required=True),
            type=kind,
            limit=_number(request, "limit", 10_000) or DEFAULT_HITTER_LIMIT,
            end_time=_stamp(end),
            start_time=_stamp(start),
        )
        answer = await self.service.query_heavy_hitters(message)
        return {
            "task": message.task_name,
            "hitters": [{"flow": h.flow, "value": h.value} for h in answer.hitters],
        }

    async def _trace(self, request: dict[str, Any]) -> dict[str, Any]:
        start, end = self._window(request)
        keys = request.get("keys") or {}
        if not isinstance(keys, dict) or not all(isinstance(v, str | int) for v in keys.values()):
            raise HttpError(400, 'keys must be an object such as {"SrcIP": "10.0.0.1", "DstPort": "443"}')
        message = v1.TraceFlowRequest(
            task_name=_text(request, "task", required=True),
            flow_keys={str(name): str(value) for name, value in keys.items()},
            end_time=_stamp(end),
            start_time=_stamp(start),
        )
        try:
            answer = await self.service.trace_flow(message)
        except GRPCError as error:
            if error.status is Status.NOT_FOUND and "matches" in str(error.message):
                return {"task": message.task_name, "found": False, "message": str(error.message)}
            raise
        life = answer.lifecycle
        assert life is not None
        return {
            "task": message.task_name,
            "found": True,
            "first_seen": int(_epoch(life.first_seen)),
            "last_seen": int(_epoch(life.last_seen)),
            "packets": life.total_packets,
            "bytes": life.total_bytes,
        }


def _is_address(host: str) -> bool:
    """True for ``127.0.0.1:8080``, ``[::1]:8080``, ``localhost:8080``; False for any other name."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _optional_epoch(stamp: Any) -> float | None:
    return None if stamp is None else _epoch(stamp)


def _epoch(stamp: Any) -> float:
    if isinstance(stamp, datetime):
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()
    return float(getattr(stamp, "seconds", 0))


def console_service(
    store: QueryStore, tasks: dict[str, str], telemetry: Any, alerts: Any = None
) -> QueryService:
    """The one QueryService both gRPC and the console call; timed per RPC when there is telemetry."""
    if telemetry is None:
        return QueryService(store, tasks, alerts)
    from netspectra.api.metrics import TimedQueryService

    return TimedQueryService(store, tasks, telemetry.observe_query, alerts)


def console_handler(
    settings: Any,
    store: QueryStore,
    tasks: dict[str, str],
    token: str | None,
    service: QueryService,
    telemetry: Any,
    alerts: Any = None,
) -> ConsoleHandler:
    """The HTTP handler of the api role: Grafana's routes, the console, and /metrics with telemetry."""
    api = settings.api
    intervals = [
        writer.snapshot_interval
        for group in (settings.aggregator.exact, settings.aggregator.sketch)
        for writer in group.writers
        if writer.enabled and writer.kind in ("clickhouse", "embedded")
    ]
    metrics = None
    if telemetry is not None:

        def metrics() -> tuple[str, bytes]:
            return telemetry.content_type, telemetry.exposition()

    return ConsoleHandler(
        store,
        tasks,
        token,
        service=service,
        cors_origins=api.cors_origins,
        max_targets=api.max_query_targets,
        metrics=metrics,
        snapshot_interval_s=min(intervals) if intervals else None,
        observe=None if telemetry is None else telemetry.observe_query,
        alerts=alerts,
    )

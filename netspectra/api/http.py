"""Grafana's JSON data source over a minimal asyncio HTTP/1.1 server.

Why not a framework: three JSON endpoints do not justify a new dependency (aiohttp is not in the
dependency set), and asyncio streams give keep-alive, bounded reads and clean shutdown in a
page of code. Limits: headers ≤ 16 KiB (else 431), body ≤ 1 MiB, one Content-Length only
(Grafana sends it; two are 400, as request smuggling hides behind them); a connection idle for
:data:`IDLE_TIMEOUT` seconds is closed (no slot held for ever); at most ``api.max_query_targets``
targets per query; JSON nested deeper than the parser's recursion limit is 400; each client
address runs ``api.max_concurrent_per_client`` requests at once, the rest wait.

Closed to browsers by default: a web page the user opens must not read flow data through the
user's browser. So no wildcard CORS: only ``api.cors_origins`` get an Access-Control-Allow-Origin
header and a preflight answer, a request whose Origin is another is 403 (Grafana's server-side
proxy sends none), and a POST must say ``Content-Type: application/json`` (a page may send
``text/plain`` cross-origin without a preflight; 415 here).

Endpoints (the simpod/grafana-json-datasource contract):
``GET /`` health; ``POST /search`` task names; ``POST /query`` for each target task two series,
``"<task> packets"`` and ``"<task> bytes"`` (a target payload ``{"metric": "packets"}`` keeps
one), one point per snapshot inside the range (the Go server returns a single point at the
range end); ``POST /annotations`` the alerter's alerts inside the range as annotation regions
(an annotation query's ``query`` text, if any, keeps one rule's).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from netspectra.api import alerts as alert_view
from netspectra.api.guard import (
    ClientLimiter,
    bearer_token_matches,
    check_task_name,
    log_storage_error,
    storage_http_status,
)
from netspectra.errors import NetSpectraError, StorageError
from netspectra.storage.query import QueryStore

logger = logging.getLogger(__name__)

MAX_HEADER = 16 * 1024
MAX_BODY = 1024 * 1024
#: Seconds a connection may sit without sending a complete request (head or body) before it is closed.
IDLE_TIMEOUT = 30.0
_REASONS = {
    200: "OK",
    400: "Bad Request",
    204: "No Content",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


#: The routes: path → the one method it answers (OPTIONS is answered for every route).
ROUTES = {"/": "GET", "/search": "POST", "/query": "POST", "/metrics": "POST", "/annotations": "POST"}
_CONTENT_LENGTH = re.compile(r"[0-9]{1,12}")
Headers = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class RawBody:
    """A payload sent as these bytes with this Content-Type (the console's files, /metrics), not JSON."""

    content_type: str
    data: bytes


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: Headers | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or []


def parse_time(value: Any, what: str) -> int:
    """Grafana's range bound (RFC 3339 text or epoch milliseconds) → epoch seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):  # json.loads accepts NaN and Infinity
            raise HttpError(400, f"range.{what} must be a finite number of epoch milliseconds")
        return int(value // 1000)
    if isinstance(value, str):
        with contextlib.suppress(ValueError, OverflowError):
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    raise HttpError(400, f"range.{what} must be an RFC 3339 time or epoch milliseconds")


def parse_json(data: str | bytes, what: str) -> Any:
    """``json.loads`` with every failure a 400, including nesting past the parser's recursion limit."""
    try:
        return json.loads(data)
    except RecursionError:
        raise HttpError(400, f"{what} nests JSON arrays or objects too deeply") from None
    except ValueError:
        raise HttpError(400, f"{what} is not JSON") from None


def _metrics(payload: Any) -> tuple[str, ...]:
    """A target's payload ``{"metric": "packets"}`` (or "bytes") selects one series; default both."""
    if isinstance(payload, str) and payload.strip():
        try:
            payload = parse_json(payload, "a target's payload")
        except HttpError:
            raise HttpError(400, 'a target\'s payload must be JSON, e.g. {"metric": "packets"}') from None
    metric = payload.get("metric") if isinstance(payload, dict) else None
    if metric is None:
        return ("packets", "bytes")
    if metric not in ("packets", "bytes"):
        raise HttpError(400, f"payload.metric must be 'packets' or 'bytes', not {str(metric)[:32]!r}")
    return (metric,)


def _media_type(headers: dict[str, str]) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


class GrafanaHandler:
    """The endpoints; ``configured`` gives configured task names (stored ones are added)."""

    def __init__(
        self,
        store: QueryStore,
        configured: dict[str, str],
        auth_token: str | None = None,
        *,
        cors_origins: tuple[str, ...] = (),
        max_targets: int = 100,
        alerts: alert_view.AlertSource | None = None,
    ) -> None:
        self.alerts = alerts
        self.store = store
        self.configured = configured
        self.auth_token = auth_token
        self.cors_origins = frozenset(origin.lower() for origin in cors_origins)
        self.max_targets = max_targets

    def cors_headers(self, headers: dict[str, str]) -> Headers:
        """Access-Control-Allow-Origin for an allowed Origin, nothing for any other."""
        origin = headers.get("origin")
        if origin is not None and origin.lower() in self.cors_origins:
            return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        return [("Vary", "Origin")] if self.cors_origins else []

    def _check_origin(self, headers: dict[str, str]) -> None:
        origin = headers.get("origin")
        if origin is not None and origin.lower() not in self.cors_origins:
            raise HttpError(
                403, f"origin {origin[:128]!r} is not allowed; list it in api.cors_origins to serve it"
            )

    async def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, Headers]:
        """(status, JSON payload or None for no body, extra headers) for one request."""
        route = path.split("?", 1)[0].rstrip("/") or "/"
        if route not in ROUTES:
            raise HttpError(404, f"no such path {route[:128]!r}; paths: {', '.join(ROUTES)}")
        allowed = f"{ROUTES[route]}, OPTIONS"
        self._check_origin(headers)
        if method == "OPTIONS":  # a CORS preflight carries no credentials: answered before the token
            requested = headers.get("access-control-request-method")
            if requested is not None and requested not in (ROUTES[route], "OPTIONS"):
                raise HttpError(405, f"{route} answers {allowed}, not {requested[:32]}", [("Allow", allowed)])
            preflight = [
                ("Allow", allowed),
                ("Access-Control-Allow-Methods", allowed),
                ("Access-Control-Allow-Headers", "Authorization, Content-Type"),
                ("Access-Control-Max-Age", "600"),
            ]
            return 204, None, preflight
        if method != ROUTES[route]:
            raise HttpError(405, f"{route} answers {allowed}, not {method[:32]}", [("Allow", allowed)])
        if (
            self.auth_token
            and route != "/"
            and not bearer_token_matches(headers.get("authorization"), self.auth_token)
        ):
            raise HttpError(401, "missing or wrong bearer token", [("WWW-Authenticate", "Bearer")])
        if route == "/":
            await self.store.ping()
            return 200, {"status": "ok"}, []
        if _media_type(headers) != "application/json":
            raise HttpError(415, "a POST body must be sent as Content-Type: application/json")
        request = parse_json(body or b"{}", "the body")
        if not isinstance(request, dict):
            raise HttpError(400, "the body must be a JSON object")
        if route == "/query":
            return 200, await self._query(request), []
        if route == "/annotations":
            return 200, self._annotations(request), []
        names = list(dict.fromkeys([*self.configured, *(await self.store.tasks())]))
        if route == "/search":
            return 200, names, []
        return 200, [{"label": name, "value": name} for name in names], []

    def _annotations(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        if self.alerts is None:
            return []
        time_range = request.get("range") or {}
        if not isinstance(time_range, dict):
            raise HttpError(400, "range must be an object with from and to")
        start = parse_time(time_range.get("from", 0), "from")
        end = parse_time(time_range["to"], "to") if "to" in time_range else 0xFFFFFFFF
        return alert_view.grafana_annotations(self.alerts, start, end, _annotation_rule(request))

    async def _query(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        time_range = request.get("range") or {}
        if not isinstance(time_range, dict):
            raise HttpError(400, "range must be an object with from and to")
        start = parse_time(time_range.get("from", 0), "from")
        end = parse_time(time_range["to"], "to") if "to" in time_range else 0xFFFFFFFF
        targets = request.get("targets") or []
        if not isinstance(targets, list):
            raise HttpError(400, 'targets must be a list, e.g. [{"target": "<task name>"}]')
        if len(targets) > self.max_targets:
            raise HttpError(
                400,
                f"{len(targets)} targets in one query; at most {self.max_targets} "
                "(api.max_query_targets), split the panel's queries",
            )
        series: list[dict[str, Any]] = []
        for target in targets:
            task = target.get("target") if isinstance(target, dict) else None
            if not isinstance(task, str) or not task:
                continue
            metrics = _metrics(target.get("payload"))
            points = await self.store.task_series(
                check_task_name(task), max(start, 0), max(min(end, 0xFFFFFFFF), 0)
            )
            if "packets" in metrics:
                packets = [[p, at * 1000] for at, p, _ in points]
                series.append({"target": f"{task} packets", "datapoints": packets})
            if "bytes" in metrics:
                sizes = [[b, at * 1000] for at, _, b in points]
                series.append({"target": f"{task} bytes", "datapoints": sizes})
        return series


def _annotation_rule(request: dict[str, Any]) -> str:
    annotation = request.get("annotation")
    query = annotation.get("query") if isinstance(annotation, dict) else None
    return query.strip() if isinstance(query, str) else ""


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    """Request line and headers (names lower-cased); HttpError 400 when malformed or ambiguous."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise HttpError(400, "malformed request line")
    method, path, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" not in line:
            continue
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name in headers and name in ("content-length", "transfer-encoding", "authorization", "origin"):
            raise HttpError(400, f"the {name} header is given twice")
        headers[name] = value.strip()
    return method, path, version, headers


class HttpServer:
    """Serves a :class:`GrafanaHandler` on host:port until :meth:`close`."""

    def __init__(self, handler: GrafanaHandler, *, max_concurrent_per_client: int = 8) -> None:
        self.handler = handler
        self.limiter = ClientLimiter(max_concurrent_per_client)
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str | None, port: int, ssl: Any = None) -> None:
        self._server = await asyncio.start_server(self._connection, host, port, ssl=ssl, limit=MAX_HEADER)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        try:
            while await self._one_request(reader, writer, client):
                pass
        except (
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
            TimeoutError,
        ):
            pass  # the client went away, or stayed idle past IDLE_TIMEOUT
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: str
    ) -> bool:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT)
        except (asyncio.LimitOverrunError, ValueError):  # ValueError: the limit hit mid-separator
            await self._send(writer, 431, {"error": f"headers exceed {MAX_HEADER} bytes"}, keep_alive=False)
            return False
        try:
            method, path, version, headers = _parse_head(head)
        except HttpError as error:
            await self._send(writer, error.status, {"error": str(error)}, keep_alive=False)
            return False
        keep_alive = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
        length_text = headers.get("content-length", "0")
        length = int(length_text) if _CONTENT_LENGTH.fullmatch(length_text) else -1
        if length < 0 or length > MAX_BODY or "transfer-encoding" in headers:
            problem = f"a body over {MAX_BODY} bytes" if length > MAX_BODY else "bad body length"
            await self._send(writer, 413 if length > MAX_BODY else 400, {"error": problem}, keep_alive=False)
            return False
        body = await asyncio.wait_for(reader.readexactly(length), IDLE_TIMEOUT) if length else b""
        extra = self.handler.cors_headers(headers)
        try:
            async with self.limiter.slot(client):
                status, payload, more = await self.handler.handle(method, path, headers, body)
        except HttpError as error:
            status, payload, more = error.status, {"error": str(error)}, error.headers
        except StorageError as error:
            status, message = storage_http_status(error)
            status, payload, more = status, {"error": message}, []
            log_storage_error(f"HTTP {method} {path[:128]}", error)
        except NetSpectraError as error:
            status, payload, more = 400, {"error": str(error)}, []
        except Exception:
            logger.exception("HTTP %s %s failed", method, path[:128])
            status, payload, more = 500, {"error": "internal error; see the server log"}, []
        await self._send(writer, status, payload, keep_alive=keep_alive, headers=[*extra, *more])
        return keep_alive

    @staticmethod
    async def _send(
        writer: asyncio.StreamWriter,
        status: int,
        payload: Any,
        *,
        keep_alive: bool,
        headers: Headers | None = None,
    ) -> None:
        if isinstance(payload, RawBody):
            body, content_type = payload.data, payload.content_type
        else:
            body, content_type = (
                (b"" if payload is None else json.dumps(payload).encode()),
                "application/json",
            )
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}"]
        if payload is not None:
            lines.append(f"Content-Type: {content_type}")
        lines += [f"Content-Length: {len(body)}", f"Connection: {'keep-alive' if keep_alive else 'close'}"]
        lines += [f"{name}: {value}" for name, value in headers or ()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()

"""Grafana's JSON data source over a minimal asyncio HTTP/1.1 server.

Why not a framework: three JSON endpoints do not justify a new dependency (aiohttp is not in the
dependency set), and asyncio streams give keep-alive, bounded reads and clean shutdown in a
page of code. Limits: headers ≤ 16 KiB (else 431), body ≤ 1 MiB, Content-Length only (Grafana
sends it); a connection idle for :data:`IDLE_TIMEOUT` seconds is closed (no slot held for ever).

Endpoints (the simpod/grafana-json-datasource contract):
``GET /`` health; ``POST /search`` task names; ``POST /query`` for each target task two series,
``"<task> packets"`` and ``"<task> bytes"`` (a target payload ``{"metric": "packets"}`` keeps
one), one point per snapshot inside the range (the Go server returns a single point at the
range end).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
from datetime import datetime
from typing import Any

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
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_time(value: Any, what: str) -> int:
    """Grafana's range bound (RFC 3339 text or epoch milliseconds) → epoch seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):  # json.loads accepts NaN and Infinity
            raise HttpError(400, f"range.{what} must be a finite number of epoch milliseconds")
        return int(value // 1000)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    raise HttpError(400, f"range.{what} must be an RFC 3339 time or epoch milliseconds")


def _metrics(payload: Any) -> tuple[str, ...]:
    """A target's payload ``{"metric": "packets"}`` (or "bytes") selects one series; default both."""
    if isinstance(payload, str) and payload.strip():
        try:
            payload = json.loads(payload)
        except ValueError:
            raise HttpError(400, 'a target\'s payload must be JSON, e.g. {"metric": "packets"}') from None
    metric = payload.get("metric") if isinstance(payload, dict) else None
    if metric is None:
        return ("packets", "bytes")
    if metric not in ("packets", "bytes"):
        raise HttpError(400, f"payload.metric must be 'packets' or 'bytes', not {str(metric)[:32]!r}")
    return (metric,)


class GrafanaHandler:
    """The endpoints; ``task_names`` gives configured task names (stored ones are added)."""

    def __init__(self, store: QueryStore, configured: dict[str, str], auth_token: str | None = None) -> None:
        self.store = store
        self.configured = configured
        self.auth_token = auth_token

    async def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        if self.auth_token and path != "/":
            given = headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.auth_token}".encode()):
                raise HttpError(401, "missing or wrong bearer token")
        route = (method, path.split("?", 1)[0].rstrip("/") or "/")
        if route == ("GET", "/"):
            await self.store.ping()
            return 200, {"status": "ok"}
        if method != "POST" or route[1] not in ("/search", "/query", "/metrics"):
            raise HttpError(
                404 if route[1] not in ("/", "/search", "/query", "/metrics") else 405, "not found"
            )
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            raise HttpError(400, "the body is not JSON") from None
        if not isinstance(request, dict):
            raise HttpError(400, "the body must be a JSON object")
        names = list(dict.fromkeys([*self.configured, *(await self.store.tasks())]))
        if route[1] == "/search":
            return 200, names
        if route[1] == "/metrics":
            return 200, [{"label": name, "value": name} for name in names]
        return 200, await self._query(request)

    async def _query(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        time_range = request.get("range") or {}
        if not isinstance(time_range, dict):
            raise HttpError(400, "range must be an object with from and to")
        start = parse_time(time_range.get("from", 0), "from")
        end = parse_time(time_range["to"], "to") if "to" in time_range else 0xFFFFFFFF
        targets = request.get("targets") or []
        if not isinstance(targets, list):
            raise HttpError(400, 'targets must be a list, e.g. [{"target": "<task name>"}]')
        series: list[dict[str, Any]] = []
        for target in targets:
            task = target.get("target") if isinstance(target, dict) else None
            if not isinstance(task, str) or not task:
                continue
            metrics = _metrics(target.get("payload"))
            points = await self.store.task_series(task, max(start, 0), min(end, 0xFFFFFFFF))
            if "packets" in metrics:
                packets = [[p, at * 1000] for at, p, _ in points]
                series.append({"target": f"{task} packets", "datapoints": packets})
            if "bytes" in metrics:
                sizes = [[b, at * 1000] for at, _, b in points]
                series.append({"target": f"{task} bytes", "datapoints": sizes})
        return series


class HttpServer:
    """Serves a :class:`GrafanaHandler` on host:port until :meth:`close`."""

    def __init__(self, handler: GrafanaHandler) -> None:
        self.handler = handler
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
        try:
            while await self._one_request(reader, writer):
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

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT)
        except (asyncio.LimitOverrunError, ValueError):  # ValueError: the limit hit mid-separator
            await self._send(writer, 431, {"error": f"headers exceed {MAX_HEADER} bytes"}, keep_alive=False)
            return False
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            await self._send(writer, 400, {"error": "malformed request line"}, keep_alive=False)
            return False
        method, path, version = parts
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        keep_alive = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY or "chunked" in headers.get("transfer-encoding", ""):
            await self._send(
                writer, 413 if length > MAX_BODY else 400, {"error": "bad body length"}, keep_alive=False
            )
            return False
        body = await asyncio.wait_for(reader.readexactly(length), IDLE_TIMEOUT) if length else b""
        try:
            status, payload = await self.handler.handle(method, path, headers, body)
        except HttpError as error:
            status, payload = error.status, {"error": str(error)}
        except StorageError as error:
            status, payload = 503, {"error": f"storage unavailable: {error}"}
        except NetSpectraError as error:
            status, payload = 400, {"error": str(error)}
        except Exception:
            logger.exception("HTTP %s %s failed", method, path)
            status, payload = 500, {"error": "internal error; see the server log"}
        await self._send(writer, status, payload, keep_alive=keep_alive)
        return keep_alive

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, status: int, payload: Any, *, keep_alive: bool) -> None:
        body = json.dumps(payload).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: {'keep-alive' if keep_alive else 'close'}\r\n"
            "Access-Control-Allow-Origin: *\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()

"""Helpers for API safety tests: an ApiRole over a real store, raw HTTP exchanges, raw gRPC bytes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from netspectra.api.role import ApiRole
from netspectra.config.models import Settings
from netspectra.storage.context import StorageContext
from tests.fixtures.clickhouse import ClickHouseServer
from tests.integration.api_truth import EXACT_TASKS

#: Words of ClickHouse's (and chdb's) own error text; none may reach a client.
STORE_WORDS = (
    "Syntax error",
    "SELECT",
    "DB::Exception",
    "Code:",
    "Cannot parse",
    "flow_metrics",
    "Traceback",
)


def store_writer(kind: str, tmp_path: Path, request: pytest.FixtureRequest, **clickhouse: Any) -> dict:
    """A writer config for a real clickhouse-server (fresh database) or the embedded chdb store."""
    if kind == "clickhouse":
        server: ClickHouseServer = request.getfixturevalue("clickhouse_server")
        options = {
            "host": server.host,
            "port": server.tcp_port,
            "database": request.getfixturevalue("clickhouse_database"),
            "queue_dir": str(tmp_path / "spool"),
            **clickhouse,
        }
        return {"type": "clickhouse", "clickhouse": options}
    return {"type": "embedded", "embedded": {"path": str(tmp_path / "store")}}


def api_settings(writer: dict, **api: Any) -> Settings:
    tasks = [{"name": name, "key_fields": [f.value for f in fields]} for name, fields in EXACT_TASKS.items()]
    return Settings.model_validate(
        {
            "aggregator": {"types": ["exact"], "exact": {"writers": [writer], "tasks": tasks}},
            "api": {"grpc_listen_addr": "127.0.0.1:0", "http_listen_addr": "127.0.0.1:0", **api},
        }
    )


@dataclass
class Serving:
    role: ApiRole
    context: StorageContext

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.role.grpc_port}"


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Serving]:
    context = StorageContext(engine_id="e1")
    role = ApiRole(settings, context)
    stop = asyncio.Event()
    task = asyncio.create_task(role.serve(stop))
    try:
        await asyncio.wait_for(role.ready.wait(), 30)
        yield Serving(role, context)
    finally:
        stop.set()
        await task
        await context.close()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def exchange(port: int, raw: bytes, timeout: float = 30) -> Reply:
    """Send ``raw`` (a whole request, ``Connection: close``) and parse the one reply."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(int(lines[0].split(" ")[1]), headers, body)


def http_request(method: str, path: str, body: bytes = b"", **headers: str) -> bytes:
    """A raw HTTP/1.1 request; ``headers`` use underscores for dashes (Content_Type=...)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number: int, wire_type: int, payload: bytes | int) -> bytes:
    """One protobuf field, written by hand so the bytes can be wrong on purpose."""
    key = varint(number << 3 | wire_type)
    if wire_type == 0:
        assert isinstance(payload, int)
        return key + varint(payload)
    assert isinstance(payload, bytes)
    return key + varint(len(payload)) + payload


def timestamp(seconds: int) -> bytes:
    """google.protobuf.Timestamp bytes; negative seconds as protobuf's two's-complement varint."""
    return field(1, 0, seconds & 0xFFFFFFFFFFFFFFFF)

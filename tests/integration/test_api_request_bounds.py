"""Every request is bounded: gRPC message size, /query targets, JSON depth, one Content-Length,
the HTTP/2 preface deadline, and a per-client share of the store.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from grpclib.client import Channel

from netspectra.wire.generated import v1
from tests.integration.api_serving import (
    api_settings,
    exchange,
    http_request,
    serving,
    store_writer,
)

JSON = "application/json"

#: An official grpcio client in its own process, so its 150 MB buffer is not counted as ours.
_BIG_REQUEST = """
import sys, grpc
address, size = sys.argv[1], int(sys.argv[2])
n, prefix = size, bytearray()
while True:
    byte = n & 0x7F
    n >>= 7
    prefix.append(byte | (0x80 if n else 0))
    if not n:
        break
payload = b"\\x12" + bytes(prefix) + b"a" * size
with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", -1)]) as channel:
    try:
        channel.unary_unary("/v1.QueryService/AggregateFlows")(payload, timeout=120)
        print("OK")
    except grpc.RpcError as error:
        print(error.code().name, error.details())
"""


def resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def test_a_150_mb_grpc_request_is_refused_before_it_is_read(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with serving(api_settings(store_writer("embedded", tmp_path, request))) as api:
        before = resident_bytes()
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _BIG_REQUEST, api.grpc, str(150 * 1024 * 1024), stdout=subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(client.communicate(), 180)
        grown = resident_bytes() - before
        answer = out.decode().strip()
        assert answer.startswith(
            "RESOURCE_EXHAUSTED a request of 157286405 bytes is over the 4194304-byte"
        ), answer
        assert grown < 40 * 1024 * 1024, f"the server grew by {grown / 2**20:.0f} MiB"
        # a request under the limit still works on the same server
        small = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _BIG_REQUEST, api.grpc, "100", stdout=subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(small.communicate(), 60)
        assert out.decode().startswith("NOT_FOUND unknown task 'aaaa")  # read, parsed and answered


async def test_http_bounds_targets_depth_and_duplicate_content_length(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings = api_settings(store_writer("embedded", tmp_path, request), max_query_targets=3)
    async with serving(settings) as api:
        port = api.role.http_port

        def query(targets: list[dict]) -> bytes:
            body = json.dumps({"range": {"from": 0, "to": 1}, "targets": targets}).encode()
            return http_request("POST", "/query", body, Content_Type=JSON)

        three = await exchange(port, query([{"target": "per_src_ip"}] * 3))
        assert three.status == 200
        four = await exchange(port, query([{"target": "per_src_ip"}] * 4))
        assert four.status == 400
        assert four.json() == {
            "error": "4 targets in one query; at most 3 (api.max_query_targets), split the panel's queries"
        }
        deep = b"[" * 100_000 + b"]" * 100_000
        nested = await exchange(port, http_request("POST", "/query", deep, Content_Type=JSON))
        assert nested.status == 400
        assert nested.json() == {"error": "the body nests JSON arrays or objects too deeply"}
        deep_payload = json.dumps(
            {"targets": [{"target": "per_src_ip", "payload": "[" * 100_000 + "]" * 100_000}]}
        ).encode()
        nested = await exchange(port, http_request("POST", "/query", deep_payload, Content_Type=JSON))
        assert nested.status == 400 and "payload must be JSON" in nested.json()["error"]
        twice = (
            b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}"
        )
        duplicate = await exchange(port, twice, timeout=10)  # answered at once, no 30 s wait
        assert duplicate.status == 400
        assert duplicate.json() == {"error": "the content-length header is given twice"}
        for length in ("+2", "2 ", "0x2", "-1", "2, 2"):
            raw = (
                "POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length:{length}\r\n\r\n{{}}"
            ).encode()
            if length == "2 ":  # trailing space is stripped as optional whitespace: a valid length
                continue
            assert (await exchange(port, raw, timeout=10)).status == 400, length


async def test_grpc_connections_without_the_http2_preface_are_closed(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings = api_settings(store_writer("embedded", tmp_path, request), handshake_timeout="300ms")
    async with serving(settings) as api:
        idle = [await asyncio.open_connection("127.0.0.1", api.role.grpc_port) for _ in range(20)]
        partial_reader, partial_writer = await asyncio.open_connection("127.0.0.1", api.role.grpc_port)
        partial_writer.write(b"PRI * HTTP/2.0\r\n")  # 16 of the preface's 24 bytes
        await partial_writer.drain()
        for reader, writer in [*idle, (partial_reader, partial_writer)]:
            # the server closes them: EOF (h2 may first send its SETTINGS frame), never a hang
            while await asyncio.wait_for(reader.read(65536), 30):
                pass
            writer.close()
        # a real client on the same server is unaffected
        code = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _BIG_REQUEST, api.grpc, "10", stdout=subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(code.communicate(), 60)
        assert out.decode().startswith("NOT_FOUND unknown task 'aaaa")  # read, parsed and answered


class ChannelFrom(Channel):
    """A grpclib channel whose connections leave from ``source``: a second client on loopback.

    grpclib has no option for a local address; this overrides its private ``_create_connection``
    (test-only; grpclib 0.4).
    """

    def __init__(self, source: str, host: str, port: int) -> None:
        super().__init__(host, port)
        self._source = source

    async def _create_connection(self) -> Any:
        _, protocol = await self._loop.create_connection(
            self._protocol_factory, self._host, self._port, local_addr=(self._source, 0)
        )
        return protocol


async def test_one_client_cannot_take_every_store_slot(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Client A (127.0.0.1) holds its 2 slots in the store; client B (127.0.0.2) still gets through."""
    settings = api_settings(store_writer("embedded", tmp_path, request), max_concurrent_per_client=2)
    async with serving(settings) as api:
        store = api.role.store
        answer = store.aggregate_flows
        release, two_inside = asyncio.Event(), asyncio.Event()
        inside: list[str | None] = []

        async def gated(query):  # type: ignore[no-untyped-def]
            if query.task == "held":
                inside.append(query.task)
                if len(inside) == 2:
                    two_inside.set()
                await release.wait()
            return await answer(query)

        store.aggregate_flows = gated  # type: ignore[method-assign]
        port = api.role.grpc_port
        a, b = ChannelFrom("127.0.0.1", "127.0.0.1", port), ChannelFrom("127.0.0.2", "127.0.0.1", port)
        try:
            stub_a, stub_b = v1.QueryServiceStub(a, timeout=60), v1.QueryServiceStub(b, timeout=60)
            held = [
                asyncio.create_task(stub_a.aggregate_flows(v1.AggregationRequest(task_name="held")))
                for _ in range(6)
            ]
            await asyncio.wait_for(two_inside.wait(), 30)
            answered = await stub_b.aggregate_flows(v1.AggregationRequest(task_name="five_tuple"))
            assert answered.summaries == []
            assert len(inside) == 2  # the other four of A's calls wait for A's own slots
            release.set()
            for call in held:
                with pytest.raises(Exception, match="unknown task"):
                    await call
            assert len(inside) == 6
        finally:
            a.close()
            b.close()

"""Every malformed or out-of-range request is INVALID_ARGUMENT in our words, on both backends.

The requests are written as raw protobuf bytes and sent by the official grpcio client (which
shares no code with the server), so wrong wire types and corrupt messages reach the server as a
hostile client would send them. No answer may carry the store's own text (ClickHouse's syntax
errors quote our SQL). A store refusing our credentials is FAILED_PRECONDITION and logged as an
authentication failure, an unreachable store UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc
import pytest

from tests.fixtures.clickhouse import ClickHouseServer, free_port
from tests.integration.api_serving import (
    STORE_WORDS,
    api_settings,
    field,
    serving,
    store_writer,
    timestamp,
)

BAD = grpc.StatusCode.INVALID_ARGUMENT
AGG, TRACE, HITTERS = "AggregateFlows", "TraceFlow", "QueryHeavyHitters"
FIVE_TUPLE = field(1, 2, b"five_tuple")  # TraceFlowRequest.task_name


def flow_key(name: bytes, value: bytes) -> bytes:
    return field(2, 2, field(1, 2, name) + field(2, 2, value))  # TraceFlowRequest.flow_keys entry


MALFORMED = [
    ("256 KB task name", AGG, field(2, 2, b"t" * 256 * 1024)),
    ("256 KB task name, trace", TRACE, field(1, 2, b"t" * 256 * 1024) + flow_key(b"SrcIP", b"1.2.3.4")),
    ("end_time 2^40 s", AGG, field(1, 2, timestamp(2**40))),
    ("negative end_time", AGG, field(1, 2, timestamp(-5))),
    ("negative end_time, hitters", HITTERS, field(1, 2, b"cm_src") + field(3, 2, timestamp(-1))),
    ("invalid UTF-8 task name", AGG, field(2, 2, b"\xff\xfe")),
    ("invalid UTF-8 flow key", TRACE, FIVE_TUPLE + flow_key(b"SrcIP", b"\xc3\x28")),
    ("port of 5000 nines", TRACE, FIVE_TUPLE + flow_key(b"DstPort", b"9" * 5000)),
    ("port '²'", TRACE, FIVE_TUPLE + flow_key(b"DstPort", "²".encode())),
    ("port '٣' (Arabic-Indic three)", TRACE, FIVE_TUPLE + flow_key(b"SrcPort", "٣".encode())),
    ("task_name sent as a varint", AGG, field(2, 0, 5)),
    ("end_time sent as a varint", AGG, field(1, 0, 5)),
    ("src_port sent as bytes", AGG, field(5, 2, b"443")),
    ("flow_keys sent as a varint", TRACE, FIVE_TUPLE + field(2, 0, 1)),
    ("corrupt bytes ff ff ff ff", AGG, b"\xff\xff\xff\xff"),
    ("corrupt bytes, hitters", HITTERS, b"\xff\xff\xff\xff"),
    ("truncated length prefix", AGG, b"\x12\x10abc"),
]  # fmt: skip


def call_raw(address: str, method: str, payload: bytes) -> tuple[grpc.StatusCode, str]:
    with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", -1)]) as channel:
        call = channel.unary_unary(f"/v1.QueryService/{method}")
        try:
            call(payload, timeout=60)
        except grpc.RpcError as error:
            return error.code(), error.details() or ""
        return grpc.StatusCode.OK, ""


@pytest.mark.parametrize("kind", ["clickhouse", "embedded"])
async def test_malformed_requests_are_invalid_argument_in_our_words(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with serving(api_settings(store_writer(kind, tmp_path, request))) as api:
        for label, method, payload in MALFORMED:
            code, message = await asyncio.to_thread(call_raw, api.grpc, method, payload)
            assert code is BAD, (label, code, message)
            assert not [word for word in STORE_WORDS if word in message], (label, message)
        # the same server still answers a good request
        code, message = await asyncio.to_thread(call_raw, api.grpc, AGG, field(2, 2, b"per_src_ip"))
        assert (code, message) == (grpc.StatusCode.OK, "")


async def test_wrong_clickhouse_password_is_an_authentication_failure(
    tmp_path: Path, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    writer = store_writer("clickhouse", tmp_path, request, password="not-the-password")
    async with serving(api_settings(writer)) as api:
        with caplog.at_level(logging.ERROR):
            code, message = await asyncio.to_thread(call_raw, api.grpc, AGG, b"")
    assert code is grpc.StatusCode.FAILED_PRECONDITION, message
    assert message == "the store refused the api's credentials; see the server log"
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("authentication failed" in line and "refused the credentials" in line for line in logged)


async def test_unreachable_store_is_unavailable_without_its_address(
    tmp_path: Path, clickhouse_server: ClickHouseServer
) -> None:
    writer = {
        "type": "clickhouse",
        "clickhouse": {"host": "127.0.0.1", "port": free_port(), "queue_dir": str(tmp_path / "spool")},
    }
    async with serving(api_settings(writer)) as api:
        code, message = await asyncio.to_thread(call_raw, api.grpc, AGG, b"")
    assert code is grpc.StatusCode.UNAVAILABLE
    assert message == "the store is unreachable; try again later (details in the server log)"


async def test_a_query_the_store_rejects_is_internal_and_its_text_stays_in_the_log(
    tmp_path: Path, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    """Our bug (here: the table dropped behind the api's back) is INTERNAL, its SQL only logged."""
    server: ClickHouseServer = request.getfixturevalue("clickhouse_server")
    writer = store_writer("clickhouse", tmp_path, request)
    async with serving(api_settings(writer)) as api:
        assert (await asyncio.to_thread(call_raw, api.grpc, AGG, b""))[0] is grpc.StatusCode.OK
        server.query(f"DROP TABLE {writer['clickhouse']['database']}.flow_latest")
        with caplog.at_level(logging.ERROR):
            code, message = await asyncio.to_thread(call_raw, api.grpc, AGG, field(2, 2, b"five_tuple"))
    assert code is grpc.StatusCode.INTERNAL
    assert message == "internal error: the store rejected a query; see the server log"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "flow_latest" in logged and "the store rejected our query" in logged

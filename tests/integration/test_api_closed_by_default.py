"""A web page the user opens cannot read flow data through the browser; nothing listens beyond loopback
unless asked, and then a WARNING names the risk. Bearer is matched case-insensitively (RFC 6750).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from pathlib import Path

import grpc
import pytest
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Status

from netspectra.api.role import split_address
from netspectra.config.loader import load_settings
from netspectra.config.models import Settings
from netspectra.wire.generated import v1
from tests.integration.api_serving import api_settings, exchange, http_request, serving, store_writer

GRAFANA = "http://grafana.example:3000"
EVIL = "https://evil.example"
JSON = "application/json"


def test_the_default_config_binds_the_api_to_loopback() -> None:
    for settings in (Settings(), load_settings(None)):
        for address in (settings.api.grpc_listen_addr, settings.api.http_listen_addr):
            host, _ = split_address(address, "listen address")
            assert host is not None and ipaddress.ip_address(host).is_loopback, address
        assert settings.api.cors_origins == ()


async def test_a_wildcard_bind_without_token_or_tls_warns(
    tmp_path: Path, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    settings = api_settings(store_writer("embedded", tmp_path, request), http_listen_addr="0.0.0.0:0")
    with caplog.at_level(logging.WARNING, logger="netspectra.api.role"):
        async with serving(settings):
            pass
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("HTTP listens on 0.0.0.0" in w and "no auth_token" in w for w in warnings), warnings
    assert any("HTTP listens on 0.0.0.0" in w and "no TLS" in w for w in warnings), warnings
    assert not any("gRPC" in w for w in warnings), warnings  # gRPC stayed on 127.0.0.1


async def test_cors_only_for_configured_origins_and_json_posts_only(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings = api_settings(store_writer("embedded", tmp_path, request), cors_origins=[GRAFANA])
    async with serving(settings) as api:
        port = api.role.http_port
        search = b'{"target": ""}'
        # no Origin (Grafana's server-side proxy): served, no CORS header
        plain = await exchange(port, http_request("POST", "/search", search, Content_Type=JSON))
        assert plain.status == 200 and "access-control-allow-origin" not in plain.headers
        # the configured origin: served and allowed to read
        allowed = await exchange(
            port, http_request("POST", "/search", search, Content_Type=JSON, Origin=GRAFANA)
        )
        assert allowed.status == 200
        assert allowed.headers["access-control-allow-origin"] == GRAFANA
        # any other origin: refused, never a wildcard
        evil = await exchange(port, http_request("POST", "/search", search, Content_Type=JSON, Origin=EVIL))
        assert evil.status == 403 and "access-control-allow-origin" not in evil.headers
        assert "not allowed" in evil.json()["error"]
        # a "simple" cross-site POST (text/plain needs no preflight): 415 before any store query
        simple = await exchange(port, http_request("POST", "/query", b"{}", Content_Type="text/plain"))
        assert simple.status == 415 and simple.json() == {
            "error": "a POST body must be sent as Content-Type: application/json"
        }
        charset = await exchange(
            port, http_request("POST", "/search", search, Content_Type="application/json; charset=utf-8")
        )
        assert charset.status == 200
        # preflight from the configured origin
        preflight = await exchange(
            port,
            http_request(
                "OPTIONS",
                "/query",
                Origin=GRAFANA,
                Access_Control_Request_Method="POST",
                Access_Control_Request_Headers="content-type, authorization",
            ),
        )
        assert preflight.status == 204 and preflight.body == b""
        assert preflight.headers["access-control-allow-origin"] == GRAFANA
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert "Authorization" in preflight.headers["access-control-allow-headers"]
        # preflight from another origin, for a method the path does not answer, on a missing path
        denied = await exchange(
            port, http_request("OPTIONS", "/query", Origin=EVIL, Access_Control_Request_Method="POST")
        )
        assert denied.status == 403 and "not allowed" in denied.json()["error"]
        wrong = await exchange(
            port, http_request("OPTIONS", "/query", Origin=GRAFANA, Access_Control_Request_Method="DELETE")
        )
        assert wrong.status == 405 and wrong.json() == {"error": "/query answers POST, OPTIONS, not DELETE"}
        assert wrong.headers["allow"] == "POST, OPTIONS"
        missing = await exchange(port, http_request("OPTIONS", "/nope"))
        assert missing.status == 404 and "no such path" in missing.json()["error"]
        get_query = await exchange(port, http_request("GET", "/query"))
        assert get_query.status == 405 and get_query.json() == {
            "error": "/query answers POST, OPTIONS, not GET"
        }


async def test_no_origin_is_allowed_by_default(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    async with serving(api_settings(store_writer("embedded", tmp_path, request))) as api:
        port = api.role.http_port
        reply = await exchange(port, http_request("GET", "/", Origin=GRAFANA))
        assert reply.status == 403 and "access-control-allow-origin" not in reply.headers
        reply = await exchange(port, http_request("GET", "/"))
        assert reply.status == 200 and "access-control-allow-origin" not in reply.headers


async def test_bearer_scheme_is_case_insensitive(
    tmp_path: Path, request: pytest.FixtureRequest, official_protos
) -> None:
    token = "s3cret-token"
    settings = api_settings(store_writer("embedded", tmp_path, request), auth_token=token)
    async with serving(settings) as api:
        port = api.role.http_port
        for scheme in ("Bearer", "bearer", "BEARER"):
            reply = await exchange(
                port,
                http_request("POST", "/search", b"{}", Content_Type=JSON, Authorization=f"{scheme} {token}"),
            )
            assert reply.status == 200, scheme
        for wrong in (f"Basic {token}", f"Bearer {token}x", token, "bearer"):
            reply = await exchange(
                port, http_request("POST", "/search", b"{}", Content_Type=JSON, Authorization=wrong)
            )
            assert reply.status == 401 and reply.headers["www-authenticate"] == "Bearer", wrong

        pb, pb_grpc = official_protos.query_pb2, official_protos.query_pb2_grpc

        def grpcio(authorization: str) -> grpc.StatusCode:
            with grpc.insecure_channel(api.grpc) as channel:
                stub = pb_grpc.QueryServiceStub(channel)
                try:
                    stub.SearchTasks(
                        pb.SearchTasksRequest(), timeout=30, metadata=[("authorization", authorization)]
                    )
                except grpc.RpcError as error:
                    return error.code()
                return grpc.StatusCode.OK

        assert await asyncio.to_thread(grpcio, f"bearer {token}") is grpc.StatusCode.OK
        assert await asyncio.to_thread(grpcio, f"Basic {token}") is grpc.StatusCode.UNAUTHENTICATED
        channel = Channel("127.0.0.1", api.role.grpc_port)
        try:
            stub = v1.QueryServiceStub(channel, timeout=30)
            answer = await stub.search_tasks(
                v1.SearchTasksRequest(), metadata={"authorization": f"BEARER {token}"}
            )
            assert answer.task_names
            with pytest.raises(GRPCError) as denied:
                await stub.search_tasks(v1.SearchTasksRequest())
            assert denied.value.status is Status.UNAUTHENTICATED
        finally:
            channel.close()

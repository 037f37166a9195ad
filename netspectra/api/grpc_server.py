"""The gRPC server: QueryService plus reflection and grpc.health.v1, optional TLS and bearer token.

Two grpclib gaps are closed here. Reflection reads our betterproto2 descriptor pool (which we
extend with the health and reflection protos so ``grpcurl describe`` works for every listed
service). And grpclib answers an unknown method with a status-only reply that lacks
``content-type``, which grpc-go clients (grpcurl) report as ``Unknown`` instead of
``Unimplemented``: :func:`patch_unimplemented_reply` adds the header on that path.
"""

from __future__ import annotations

import hmac
import logging
import ssl
from collections.abc import Sequence
from typing import Any

import grpclib.server
from google.protobuf import descriptor_pb2
from grpclib import GRPCError
from grpclib.const import Status
from grpclib.events import RecvRequest, listen
from grpclib.health.service import Health
from grpclib.reflection.service import ServerReflection
from grpclib.server import Server

from netspectra.wire.generated import v1  # noqa: F401 - registers the v1 files in the pool
from netspectra.wire.generated.google_proto_descriptor_pool import default_google_proto_descriptor_pool

logger = logging.getLogger(__name__)

#: Paths callable without the bearer token: health probes and schema discovery.
OPEN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")

_original_abort = grpclib.server._abort


async def _abort_with_content_type(
    h2_stream: Any, h2_status: int, grpc_status: Status | None = None, grpc_message: str | None = None
) -> None:
    if h2_status == 200 and grpc_status is not None:
        # A Trailers-Only reply is still a gRPC response: clients require its content-type.
        headers = [
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", str(grpc_status.value)),
        ]
        if grpc_message is not None:
            headers.append(("grpc-message", grpc_message))
        await h2_stream.send_headers(headers, end_stream=True)
        if h2_stream.closable:
            h2_stream.reset_nowait()
        return
    await _original_abort(h2_stream, h2_status, grpc_status, grpc_message)


def patch_unimplemented_reply() -> None:
    """Make grpclib's status-only replies carry ``content-type`` (idempotent, process-wide)."""
    grpclib.server._abort = _abort_with_content_type


def _add_file(pool: Any, file_descriptor: Any) -> None:
    try:
        pool.FindFileByName(file_descriptor.name)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    file_descriptor.CopyToProto(proto)
    for dependency in file_descriptor.dependencies:
        _add_file(pool, dependency)
    pool.Add(proto)


def reflection_pool() -> Any:
    """Our descriptor pool with grpc.health.v1 and the reflection protos added."""
    from grpclib.health.v1 import health_pb2
    from grpclib.reflection.v1 import reflection_pb2
    from grpclib.reflection.v1alpha import reflection_pb2 as reflection_alpha_pb2

    pool = default_google_proto_descriptor_pool
    for module in (health_pb2, reflection_pb2, reflection_alpha_pb2):
        _add_file(pool, module.DESCRIPTOR)
    return pool


def tls_context(cert: str, key: str, alpn: str | None = "h2") -> ssl.SSLContext:
    """Server TLS; gRPC needs ALPN h2, the HTTP/1.1 endpoints none."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if alpn:
        context.set_alpn_protocols([alpn])
    return context


def build_server(services: Sequence[Any], *, auth_token: str | None = None) -> Server:
    """A grpclib Server for ``services`` with reflection, health and the token check."""
    patch_unimplemented_reply()
    everything = ServerReflection.extend([*services, Health()], pool=reflection_pool())
    server = Server(everything)
    if auth_token:
        expected = f"Bearer {auth_token}".encode()

        async def check_token(event: RecvRequest) -> None:
            if event.method_name.startswith(OPEN_PREFIXES):
                return
            given = event.metadata.get("authorization", "")
            if not isinstance(given, str) or not hmac.compare_digest(given.encode(), expected):
                raise GRPCError(
                    Status.UNAUTHENTICATED, "missing or wrong bearer token (authorization metadata)"
                )

        listen(server, RecvRequest, check_token)
    return server

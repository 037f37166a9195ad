"""grpclib's private internals NetSpectra relies on; nothing else touches them.

Written against grpclib 0.4 (0.4.9 checked; pyproject pins ``grpclib<0.5``). Each use is checked
by ``tests/unit/contracts/test_grpclib_internals.py``, which names the attribute and the installed
version when an upgrade breaks it. Every change applies to one server object, never to grpclib
as a whole.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpclib.server
from google.protobuf.empty_pb2 import Empty
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server

logger = logging.getLogger(__name__)


async def method_not_found(stream: Any) -> None:
    """The handler of every path the server does not serve (a listener may recognise it by identity)."""
    raise GRPCError(Status.UNIMPLEMENTED, "Method not found")


_NOT_FOUND = Handler(method_not_found, Cardinality.UNARY_UNARY, Empty, Empty)


class _UnknownMethodsRouted(dict[str, Handler]):
    """grpclib's path → handler table, where a miss is :func:`method_not_found` instead of ``None``."""

    def get(self, key: str, default: Any = None) -> Any:
        handler = super().get(key)
        return _NOT_FOUND if handler is None else handler


def answer_unknown_methods_in_full(server: Server) -> None:
    """Make ``server`` answer an unknown method with a complete gRPC reply.

    grpclib answers one itself with a status-only reply that lacks ``content-type``, which grpc-go
    clients (grpcurl) and grpclib's own client report as ``Unknown``/"Missing content-type" instead
    of ``Unimplemented``. Its request handler looks the path up with ``mapping.get(path)`` in the
    server's private ``Server._mapping``; here that table routes a miss to a handler raising
    UNIMPLEMENTED, so the reply goes through grpclib's normal stream, which writes the header.
    """
    server._mapping = _UnknownMethodsRouted(server._mapping)


def listening_port(server: Server) -> int | None:
    """The TCP port a started ``server`` listens on (port 0 asks for a free one); None if unknown.

    grpclib keeps its ``asyncio.Server`` private (``Server._server``) and exposes no address.
    """
    sockets = getattr(server._server, "sockets", None) or ()
    return int(sockets[0].getsockname()[1]) if sockets else None


def bound_request_size(stream: grpclib.server.Stream, limit: int) -> None:
    """Refuse a request message over ``limit`` bytes from its 5-byte length prefix, before its body.

    grpclib reads a message by asking its HTTP/2 stream for the prefix, then for exactly the
    length the prefix gives; nothing else asks for more. Flow control does the rest: data is
    acknowledged only as it is read, so an unread body stays within the stream window.
    Private internal: ``grpclib.server.Stream._stream`` (the HTTP/2 stream) and its ``recv_data``.
    """
    h2_stream = stream._stream
    read = h2_stream.recv_data

    async def recv_data(size: int) -> bytes:
        if size > limit:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"a request of {size} bytes is over the {limit}-byte limit (api.max_message_bytes)",
            )
        return await read(size)

    h2_stream.recv_data = recv_data  # type: ignore[method-assign]


#: The 24 bytes every HTTP/2 client sends first (RFC 9113 §3.4).
HTTP2_PREFACE_LENGTH = 24


def close_connections_without_preface(server: Server, timeout: float) -> None:
    """Close a connection that has not sent the HTTP/2 preface ``timeout`` seconds after it opened.

    grpclib waits for ever otherwise: a client that opens connections and sends nothing holds a
    socket and a protocol object each. Private internals: ``Server._protocol_factory`` and the
    protocol's ``connection_made``/``data_received``.
    """
    make_protocol = server._protocol_factory

    def protocol_factory() -> Any:
        protocol = make_protocol()
        connection_made, data_received = protocol.connection_made, protocol.data_received
        state: dict[str, Any] = {"received": 0, "timer": None}

        def made(transport: Any) -> None:
            connection_made(transport)

            def expire() -> None:
                if state["received"] < HTTP2_PREFACE_LENGTH:
                    logger.info(
                        "Closing gRPC connection from %s: no HTTP/2 preface in %.3g s",
                        transport.get_extra_info("peername"),
                        timeout,
                    )
                    transport.abort()

            state["timer"] = asyncio.get_running_loop().call_later(timeout, expire)

        def received(data: bytes) -> None:
            state["received"] += len(data)
            if state["received"] >= HTTP2_PREFACE_LENGTH and state["timer"] is not None:
                state["timer"].cancel()
                state["timer"] = None
            data_received(data)

        protocol.connection_made, protocol.data_received = made, received  # type: ignore[method-assign]
        return protocol

    server._protocol_factory = protocol_factory  # type: ignore[method-assign]

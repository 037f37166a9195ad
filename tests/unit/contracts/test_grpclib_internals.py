"""grpclib's private surface used by netspectra/api/grpclib_internals.py, with a real server and client."""

from __future__ import annotations

import inspect

import grpclib.protocol
import grpclib.server
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from grpclib.health.service import Health
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpclib.server import Server

from netspectra.api import grpclib_internals
from tests.unit.contracts.contract import Contract

GRPCLIB = Contract("grpclib", "netspectra/api/grpclib_internals.py")


def test_version_is_within_the_pin() -> None:
    GRPCLIB.check(GRPCLIB.version.startswith("0.4."), "the code was written for grpclib 0.4.x")


async def test_private_state_and_the_lookup_it_relies_on() -> None:
    server = Server([Health()])
    mapping = GRPCLIB.attribute(server, "_mapping")
    GRPCLIB.check(type(mapping) is dict, f"Server._mapping is a {type(mapping).__name__}, not a dict")
    GRPCLIB.check(
        hasattr(server, "_server") and server._server is None, "Server._server is not None before start"
    )
    factory = GRPCLIB.attribute(server, "_protocol_factory")
    GRPCLIB.check(callable(factory), "Server._protocol_factory is not callable")
    protocol = server._protocol_factory()
    for name in ("connection_made", "data_received"):
        GRPCLIB.check(callable(getattr(protocol, name, None)), f"the server protocol has no {name}()")
    GRPCLIB.parameters(grpclib.server.Stream, "__init__", ["self", "stream"])
    GRPCLIB.check(
        "self._stream = stream" in inspect.getsource(grpclib.server.Stream.__init__),
        "server Stream no longer keeps its HTTP/2 stream as _stream",
    )
    GRPCLIB.parameters(grpclib.protocol.Stream, "recv_data", ["self", "size"])
    source = inspect.getsource(grpclib.server.request_handler)
    GRPCLIB.check(
        "mapping.get(method_name)" in source, "request_handler no longer looks methods up with mapping.get"
    )


async def test_unknown_method_is_unimplemented_with_content_type_and_the_port_is_found() -> None:
    """grpclib's own client refuses a reply without content-type, so this checks the header too."""
    server = Server([Health()])
    grpclib_internals.answer_unknown_methods_in_full(server)
    await server.start("127.0.0.1", 0)
    try:
        port = grpclib_internals.listening_port(server)
        GRPCLIB.check(
            isinstance(port, int) and port > 0, f"listening_port found {port!r} (Server._server.sockets)"
        )
        channel = Channel("127.0.0.1", port)
        try:
            known = channel.request(
                "/grpc.health.v1.Health/Check",
                Cardinality.UNARY_UNARY,
                HealthCheckRequest,
                HealthCheckResponse,
            )
            async with known as stream:
                await stream.send_message(HealthCheckRequest(), end=True)
                reply = await stream.recv_message()
            GRPCLIB.check(reply is not None and reply.status == 1, "a served method stopped answering")
            missing = channel.request(
                "/grpc.health.v1.Health/NoSuchMethod",
                Cardinality.UNARY_UNARY,
                HealthCheckRequest,
                HealthCheckResponse,
            )
            status = None
            try:
                async with missing as stream:
                    await stream.send_message(HealthCheckRequest(), end=True)
                    await stream.recv_message()
            except GRPCError as error:
                status, message = error.status, error.message
            GRPCLIB.check(
                status is Status.UNIMPLEMENTED,
                f"an unknown method answered {status} ({message if status else 'no error'}), "
                "not UNIMPLEMENTED",
            )
        finally:
            channel.close()
    finally:
        server.close()
        await server.wait_closed()

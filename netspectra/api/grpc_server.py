"""The gRPC server: QueryService plus reflection and grpc.health.v1, optional TLS and bearer token.

Two grpclib gaps are closed here. Reflection reads our betterproto2 descriptor pool (which we
extend with the health and reflection protos so ``grpcurl describe`` works for every listed
service). And grpclib answers an unknown method with a status-only reply that lacks
``content-type``, which grpc-go clients (grpcurl) report as ``Unknown`` instead of
``Unimplemented``: our servers route unknown methods to a handler that answers in full
(:func:`~netspectra.api.grpclib_internals.answer_unknown_methods_in_full`, per server).

Every request is bounded and checked before our code sees it: :class:`StrictCodec` refuses
malformed protobuf (betterproto2 parses ``\\xff\\xff\\xff\\xff`` as an empty request, a wrong wire
type as a best guess) with INVALID_ARGUMENT; request and reply sizes are capped
(``api.max_message_bytes``, RESOURCE_EXHAUSTED before the body is read); one client address
runs ``api.max_concurrent_per_client`` calls at once; a connection that does not send the HTTP/2
preface within ``api.handshake_timeout`` is closed.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpclib.server
from google.protobuf import descriptor_pb2, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet
from grpclib import GRPCError
from grpclib.const import Handler, Status
from grpclib.encoding.base import CodecBase
from grpclib.encoding.proto import ProtoCodec
from grpclib.events import RecvRequest, listen
from grpclib.health.service import Health
from grpclib.reflection.service import ServerReflection
from grpclib.server import Server

from netspectra.api.grpclib_internals import (
    answer_unknown_methods_in_full,
    bound_request_size,
    close_connections_without_preface,
    method_not_found,
)
from netspectra.api.guard import ClientLimiter, bearer_token_matches
from netspectra.wire.generated import v1  # noqa: F401 - registers the v1 files in the pool
from netspectra.wire.generated.google_proto_descriptor_pool import default_google_proto_descriptor_pool

logger = logging.getLogger(__name__)

#: Paths callable without the bearer token: health probes and schema discovery.
OPEN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


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


def _repeated(field: FieldDescriptor) -> bool:
    """protobuf 7 removed ``label``; ``is_repeated`` replaced it (absent in early 5.x)."""
    flag = getattr(field, "is_repeated", None)
    return bool(flag) if flag is not None else field.label == FieldDescriptor.LABEL_REPEATED


def _wire_type_problem(message: Message) -> str | None:
    """The first known field that arrived with the wrong wire type (the parser keeps it as unknown)."""
    descriptor = message.DESCRIPTOR
    known = {field.number: field.name for field in descriptor.fields}
    for unknown in UnknownFieldSet(message):
        if unknown.field_number in known:
            return f"{descriptor.full_name}.{known[unknown.field_number]} has the wrong wire type"
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            values = value.values() if field.message_type.fields_by_name["value"].message_type else ()
        elif _repeated(field):
            values = value
        else:
            values = (value,)
        for item in values:
            if problem := _wire_type_problem(item):
                return problem
    return None


class StrictCodec(CodecBase):
    """grpclib's proto codec, strict about what it accepts and bounded in what it sends.

    Our betterproto2 messages parse leniently (garbage reads as defaults), so every request is
    first parsed by the official protobuf runtime from the same descriptors: corrupt bytes,
    invalid UTF-8 and known fields with the wrong wire type are INVALID_ARGUMENT; so is a value
    betterproto2 then cannot represent (a Timestamp past year 9999).
    """

    __content_subtype__ = "proto"

    def __init__(self, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes
        self._proto = ProtoCodec()
        self._reference: dict[Descriptor, Any] = {}

    def encode(self, message: Any, message_type: Any) -> bytes:
        data = self._proto.encode(message, message_type)
        if len(data) > self.max_message_bytes:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"the reply would be {len(data)} bytes, over the {self.max_message_bytes}-byte limit "
                "(api.max_message_bytes); narrow the request (task, filters, limit)",
            )
        return data

    def decode(self, data: bytes, message_type: Any) -> Any:
        what = getattr(getattr(message_type, "DESCRIPTOR", None), "full_name", message_type.__name__)
        if not (isinstance(message_type, type) and issubclass(message_type, Message)):
            descriptor = message_type.DESCRIPTOR
            reference = self._reference.get(descriptor)
            if reference is None:
                reference = self._reference[descriptor] = message_factory.GetMessageClass(descriptor)
            try:
                parsed = reference.FromString(data)
            except DecodeError:
                problem: str | None = "corrupt protobuf or invalid UTF-8 in a string field"
            else:
                problem = _wire_type_problem(parsed)
            if problem:
                raise GRPCError(Status.INVALID_ARGUMENT, f"the request is not a valid {what}: {problem}")
        try:
            return self._proto.decode(data, message_type)
        except Exception as error:
            raise GRPCError(
                Status.INVALID_ARGUMENT,
                f"the request is not a valid {what}: a value is out of range ({type(error).__name__})",
            ) from None


def _client(stream: grpclib.server.Stream) -> str:
    address = stream.peer.addr()
    return str(address[0]) if address else "unknown"


class _Guarded:
    """A service whose every handler is size-bounded and takes a slot of its client first."""

    def __init__(self, service: Any, max_message_bytes: int, limiter: ClientLimiter) -> None:
        self._service = service
        self._max = max_message_bytes
        self._limiter = limiter

    def _guard(self, func: Callable[[Any], Any]) -> Callable[[Any], Any]:
        async def guarded(stream: grpclib.server.Stream) -> None:
            bound_request_size(stream, self._max)
            async with self._limiter.slot(_client(stream)):
                await func(stream)

        return guarded

    def __mapping__(self) -> Mapping[str, Handler]:
        return {
            path: Handler(self._guard(handler.func), *handler[1:])
            for path, handler in self._service.__mapping__().items()
        }


def build_server(
    services: Sequence[Any],
    *,
    auth_token: str | None = None,
    max_message_bytes: int = 4 * 1024 * 1024,
    max_concurrent_per_client: int = 8,
    handshake_timeout: float = 10.0,
) -> Server:
    """A grpclib Server for ``services`` with reflection, health, the token check and the bounds."""
    everything = ServerReflection.extend([*services, Health()], pool=reflection_pool())
    limiter = ClientLimiter(max_concurrent_per_client)
    server = Server(
        [_Guarded(service, max_message_bytes, limiter) for service in everything],
        codec=StrictCodec(max_message_bytes),
    )
    close_connections_without_preface(server, handshake_timeout)
    answer_unknown_methods_in_full(server)
    if auth_token:
        token = auth_token

        async def check_token(event: RecvRequest) -> None:
            if event.method_name.startswith(OPEN_PREFIXES) or event.method_func is method_not_found:
                return  # an unknown method is Unimplemented for everyone, as grpclib answers it
            given = event.metadata.get("authorization")
            if not bearer_token_matches(given if isinstance(given, str) else None, token):
                raise GRPCError(
                    Status.UNAUTHENTICATED, "missing or wrong bearer token (authorization metadata)"
                )

        listen(server, RecvRequest, check_token)
    return server

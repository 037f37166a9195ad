"""The NATS bus (nats-py): reconnects forever, drains on close, counts what it loses.

Losses have three shapes, and each one is counted: nats-py calls ``error_cb`` with
``SlowConsumerError`` once per message it drops from a full pending queue (it keeps no counter
of its own), so :attr:`BusStats.dropped` counts those calls; a publish refused while the client
is disconnected with a full reconnect buffer is :attr:`BusStats.publish_failed`; and messages in
flight when a server dies are invisible to the client, which is why probes also publish count
messages the engine compares with what it received.

Credentials and TLS come from the config's ``auth`` section only (the config loader lays the
``NETSPECTRA_NATS_*`` variables over it; nothing here reads the environment). Secrets are never
logged: URLs are shown without their user-info.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from typing import Any

import nats
import nats.errors
import numba as nb
import numpy as np
import numpy.typing as npt
from nats.aio.client import Client

from netspectra.bus.base import BusStats, Handler, publish_each
from netspectra.bus.nats_internals import (
    DIRECT_DELIVERY,
    FRAME_WRITES,
    DirectClient,
    PayloadSink,
    reconnect_buffer_fits,
    subscription_sid,
    write_frames,
    write_queued,
)
from netspectra.config.models import NatsAuth, redact_url
from netspectra.errors import BusError

logger = logging.getLogger(__name__)

#: Bytes nats-py buffers for publishes while it reconnects (its default is 2 MiB, i.e. about
#: 40 k packets — too little to ride out a server restart at full rate).
RECONNECT_BUFFER_BYTES = 256 * 1024 * 1024


#: Messages per protocol chunk handed to the client by :meth:`NatsBus.publish_many`.
_FRAME_CHUNK = 8192


@nb.njit(cache=True, nogil=True)
def _pub_frames(subject, data, starts, ends, out):  # type: ignore[no-untyped-def]
    """Write ``PUB <subject> <len>\\r\\n<payload>\\r\\n`` for every message; returns bytes used.

    Exactly the bytes nats-py's ``publish`` writes for a message without reply or headers.
    """
    pos = 0
    digits = np.empty(20, np.uint8)
    for i in range(starts.shape[0]):
        out[pos] = 80  # P
        out[pos + 1] = 85  # U
        out[pos + 2] = 66  # B
        out[pos + 3] = 32
        pos += 4
        for k in range(subject.shape[0]):
            out[pos + k] = subject[k]
        pos += subject.shape[0]
        out[pos] = 32
        out[pos + 1] = 32  # the empty reply-to, as nats-py writes it
        pos += 2
        size = ends[i] - starts[i]
        n_digits = 0
        value = size
        while True:
            digits[n_digits] = 48 + value % 10
            n_digits += 1
            value //= 10
            if value == 0:
                break
        for k in range(n_digits):
            out[pos + k] = digits[n_digits - 1 - k]
        pos += n_digits
        out[pos] = 13
        out[pos + 1] = 10
        pos += 2
        begin = starts[i]
        for k in range(size):
            out[pos + k] = data[begin + k]
        pos += size
        out[pos] = 13
        out[pos + 1] = 10
        pos += 2
    return pos


def pub_frames(
    subject: bytes, data: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64]
) -> bytes:
    """The NATS protocol bytes that publish ``data[starts[i]:ends[i]]`` on ``subject`` one by one."""
    n = int(starts.shape[0])
    if n == 0:
        return b""
    longest = int((ends - starts).max())
    out = np.empty(n * (len(subject) + longest + 30), np.uint8)
    used = _pub_frames(np.frombuffer(subject, np.uint8), data, starts, ends, out)
    return out[:used].tobytes()


def connect_options(auth: NatsAuth) -> dict[str, Any]:
    """nats-py ``connect`` keyword arguments for ``auth`` (the settings' credentials and TLS files)."""
    user = auth.user
    password = auth.password.get_secret_value() if auth.password else None
    token = auth.token.get_secret_value() if auth.token else None
    creds = auth.creds_file
    seed = auth.nkeys_seed_file
    tls_ca, tls_cert, tls_key = auth.tls_ca, auth.tls_cert, auth.tls_key
    options: dict[str, Any] = {}
    if user:
        options["user"] = user
        if password:
            options["password"] = password
    if token:
        options["token"] = token
    if creds:
        if not os.path.isfile(creds):
            raise BusError(f"NATS credentials file {creds!r} does not exist (auth.creds_file)")
        options["user_credentials"] = creds
    if seed:
        if not os.path.isfile(seed):
            raise BusError(f"NATS nkeys seed file {seed!r} does not exist (auth.nkeys_seed_file)")
        options["nkeys_seed"] = seed
    if tls_ca or tls_cert:
        if bool(tls_cert) != bool(tls_key):
            raise BusError("NATS TLS: set both tls_cert and tls_key (client certificate), or neither")
        try:
            context = ssl.create_default_context(cafile=tls_ca)
            if tls_cert:
                context.load_cert_chain(tls_cert, tls_key)
        except (OSError, ssl.SSLError) as error:
            raise BusError(f"NATS TLS files cannot be loaded: {error}") from error
        options["tls"] = context
    return options


class NatsSubscription:
    def __init__(self, subscription: Any, client: Client | None = None) -> None:
        self._subscription = subscription
        self._client = client

    async def drain(self) -> None:
        """Stop receiving; nats-py delivers what it already holds before this returns."""
        try:
            await self._subscription.drain()
        except (nats.errors.Error, TimeoutError) as error:
            # the connection is gone or closing: nothing more can arrive
            logger.info("Subscription drain ended early: %s", type(error).__name__)
        self._forget()

    async def unsubscribe(self) -> None:
        with contextlib.suppress(nats.errors.ConnectionClosedError):
            await self._subscription.unsubscribe()
        self._forget()

    def _forget(self) -> None:
        if isinstance(self._client, DirectClient):
            self._client.payload_sinks.pop(subscription_sid(self._subscription), None)


class NatsBus:
    """One nats-py connection, shared by the roles of a process."""

    def __init__(
        self,
        url: str,
        auth: NatsAuth | None = None,
        *,
        name: str = "netspectra",
        reconnect_wait_s: float = 0.5,
        connect_timeout_s: float = 2.0,
        initial_attempts: int = 2,
        randomize: bool = True,
    ) -> None:
        self.url = url
        self.servers = [part.strip() for part in url.split(",") if part.strip()]
        self.name = name
        self.stats = BusStats()
        self._options = connect_options(auth or NatsAuth())
        self._reconnect_wait_s = reconnect_wait_s
        self._connect_timeout_s = connect_timeout_s
        self._client: Client | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._last_drop_log = 0.0
        self._last_error: Exception | None = None
        self._initial_attempts = initial_attempts
        # nats-py shuffles the servers of a cluster (and those it learns from them) so clients
        # spread over the nodes; tests turn it off to know which node a client is on
        self._randomize = randomize
        self._node: str | None = None  # the server connected to last (named when it goes away)

    @property
    def shown_url(self) -> str:
        return redact_url(self.url)

    @property
    def connected_url(self) -> str | None:
        """The server this client is connected to now (one node of a cluster), without user-info."""
        client = self._client
        if client is None or client.connected_url is None or not client.is_connected:
            return None
        return redact_url(str(client.connected_url.geturl()))

    @property
    def client(self) -> Client:
        if self._client is None:
            raise BusError("NATS bus used before connect()")
        return self._client

    async def connect(self) -> None:
        async with self._lock:
            if self._client is not None:
                return
            if self._closed:
                raise BusError("the NATS bus is closed")
            client = DirectClient() if DIRECT_DELIVERY else Client()
            try:
                await client.connect(
                    servers=self.servers,
                    dont_randomize=not self._randomize,
                    name=self.name,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnect,
                    reconnected_cb=self._on_reconnect,
                    closed_cb=self._on_closed,
                    allow_reconnect=True,
                    # a bounded first attempt, so a wrong URL or password is an error, not a hang;
                    # once connected, reconnect forever (nats-py reads this option on each attempt)
                    max_reconnect_attempts=self._initial_attempts,
                    reconnect_time_wait=self._reconnect_wait_s,  # type: ignore[arg-type]
                    connect_timeout=self._connect_timeout_s,  # type: ignore[arg-type]
                    pending_size=RECONNECT_BUFFER_BYTES,
                    skip_subject_validation=True,
                    **self._options,
                )
                self._client = client
            except (OSError, TimeoutError, nats.errors.Error) as error:
                cause = self._last_error or error
                raise BusError(
                    f"cannot connect to NATS at {self.shown_url}: {type(cause).__name__}: {cause}. "
                    "Start nats-server there or fix probe.nats_url / engine.nats_url "
                    "(use 'embedded' to run probe and engine in one process without a server)."
                ) from error
            self._client.options["max_reconnect_attempts"] = -1
            self._node = self.connected_url
            if len(self.servers) > 1:
                logger.info("Connected to NATS at %s (of %s)", self.connected_url, self.shown_url)
            else:
                logger.info("Connected to NATS at %s", self.shown_url)

    async def _on_error(self, error: Exception) -> None:
        if isinstance(error, nats.errors.SlowConsumerError):
            self.stats.dropped += 1
            now = time.monotonic()
            if now - self._last_drop_log > 5.0:
                self._last_drop_log = now
                logger.warning(
                    "NATS slow consumer on %s: %d messages dropped so far (raise engine.pending_msgs_limit "
                    "or add engines to the queue group)",
                    error.subject,
                    self.stats.dropped,
                )
            return
        self._last_error = error
        name = type(error).__name__
        self.stats.errors[name] = self.stats.errors.get(name, 0) + 1
        logger.warning("NATS error (%s): %s", name, error)

    async def _on_disconnect(self) -> None:
        if self._closed:
            return
        self.stats.disconnects += 1
        if len(self.servers) > 1:
            logger.warning(
                "Disconnected from NATS at %s; failing over to the others of %s", self._node, self.shown_url
            )
        else:
            logger.warning("Disconnected from NATS at %s; reconnecting", self.shown_url)

    async def _on_reconnect(self) -> None:
        self.stats.reconnects += 1
        self._node = self.connected_url
        logger.info("Reconnected to NATS at %s", self._node or "?")

    async def _on_closed(self) -> None:
        logger.info("NATS connection to %s closed", self.shown_url)

    async def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            await self.client.publish(subject, data, headers=headers)
        except (
            nats.errors.OutboundBufferLimitError,
            nats.errors.ConnectionClosedError,
            nats.errors.MaxPayloadError,
        ) as error:
            self.stats.publish_failed += 1
            raise BusError(f"NATS refused a publish on {subject}: {type(error).__name__}") from error

    async def publish_many(
        self, subject: str, data: bytes, starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64]
    ) -> int:
        """Publish ``data[starts[i]:ends[i]]`` as separate messages, built in one kernel run per chunk.

        nats-py has no bulk publish: its ``publish`` costs ~3 us of Python per message, more than
        everything else the probe does per packet. So the ``PUB`` protocol lines of a chunk are
        written by :func:`_pub_frames` and queued through the client's own command buffer
        (:func:`~netspectra.bus.nats_internals.write_frames`, what ``publish`` itself does), with
        the same checks ``publish`` makes: while disconnected the chunk goes into the reconnect
        buffer if it fits, else it is refused and counted. Clients without that buffer (another
        nats-py major version) get the per-message loop.
        """
        client = self.client
        n = int(starts.shape[0])
        if n and int((ends - starts).max()) > client.max_payload:
            raise BusError(f"a message on {subject} exceeds the server's max_payload {client.max_payload}")
        if not FRAME_WRITES:
            return await publish_each(self, subject, data, starts, ends)
        buffer = np.frombuffer(data, np.uint8)
        encoded_subject = subject.encode()
        accepted = 0
        for begin in range(0, n, _FRAME_CHUNK):
            end = min(begin + _FRAME_CHUNK, n)
            frames = pub_frames(encoded_subject, buffer, starts[begin:end], ends[begin:end])
            refused = client.is_closed or client.is_draining_pubs
            if not refused and not client.is_connected:
                refused = not reconnect_buffer_fits(client, len(frames))
            if refused:
                self.stats.publish_failed += end - begin
                continue
            await write_frames(client, frames, end - begin, int((ends[begin:end] - starts[begin:end]).sum()))
            accepted += end - begin
            await asyncio.sleep(0)  # let the flusher (and an in-process engine) run
        return accepted

    async def subscribe(
        self,
        subject: str,
        handler: Handler,
        *,
        queue: str = "",
        pending_msgs_limit: int = 2_000_000,
        pending_bytes_limit: int = 512 * 1024 * 1024,
    ) -> NatsSubscription:
        await self.connect()

        async def deliver(message: Any) -> None:
            handler(message)

        subscription = await self.client.subscribe(
            subject,
            queue=queue,
            cb=deliver,
            pending_msgs_limit=pending_msgs_limit,
            pending_bytes_limit=pending_bytes_limit,
        )
        return NatsSubscription(subscription, self.client)

    async def subscribe_payloads(
        self,
        subject: str,
        sink: PayloadSink,
        *,
        queue: str = "",
        pending_msgs_limit: int = 2_000_000,
        pending_bytes_limit: int = 512 * 1024 * 1024,
    ) -> NatsSubscription:
        """Like :meth:`subscribe`, but ``sink`` gets only the payload, straight from the parser.

        See :class:`~netspectra.bus.nats_internals.DirectClient`. The subscription is also a
        normal nats-py one (used for messages with headers, and wholesale if nats-py's hook ever
        disappears).
        """
        subscription = await self.subscribe(
            subject,
            lambda message: sink(message.data),
            queue=queue,
            pending_msgs_limit=pending_msgs_limit,
            pending_bytes_limit=pending_bytes_limit,
        )
        client = self.client
        if isinstance(client, DirectClient):
            client.payload_sinks[subscription_sid(subscription._subscription)] = sink
        return subscription

    async def flush(self, timeout: float = 10.0) -> None:
        """Return once the server has processed everything sent before (a PING's PONG came back).

        What nats-py still holds in its command buffer is written first: its own ``flush()``
        lets the PING overtake it (:func:`~netspectra.bus.nats_internals.write_queued`; the
        :class:`DirectClient` does it in its ``flush``, a plain client here).
        """
        client = self.client
        try:
            if FRAME_WRITES and not isinstance(client, DirectClient) and not client.is_closed:
                await asyncio.wait_for(write_queued(client), timeout)
            await client.flush(timeout=timeout)  # type: ignore[arg-type]
        except (nats.errors.TimeoutError, nats.errors.ConnectionClosedError, TimeoutError) as error:
            raise BusError(f"NATS flush to {self.shown_url} failed: {type(error).__name__}") from error

    async def close(self) -> None:
        """Drain subscriptions and pending publishes, then close (idempotent)."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            client, self._client = self._client, None
        if client is None or client.is_closed:
            return
        try:
            await client.drain()
        except (nats.errors.Error, OSError, TimeoutError) as error:
            logger.warning("NATS drain failed (%s); closing", type(error).__name__)
            await client.close()

"""The API role: gRPC and Grafana HTTP over the configured store, until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from typing import Any

from netspectra.alerting.alerter import Alerter
from netspectra.api import alerts as alert_view
from netspectra.api.console import console_handler, console_service
from netspectra.api.grpc_server import build_server, tls_context
from netspectra.api.grpclib_internals import listening_port
from netspectra.api.http import HttpServer
from netspectra.config.models import Settings
from netspectra.errors import ConfigError
from netspectra.storage.context import StorageContext
from netspectra.storage.registry import open_query_store

logger = logging.getLogger(__name__)


def split_address(address: str, what: str) -> tuple[str | None, int]:
    """``":50051"`` → (None = all interfaces, 50051); ``"127.0.0.1:0"``, ``"[::1]:80"`` too."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65_535:
        raise ConfigError(f"{what} {address!r} is not HOST:PORT (e.g. ':50051' or '127.0.0.1:0')")
    host = host.strip("[]")
    return (host or None), int(port_text)


def is_loopback(host: str | None) -> bool:
    """True for a loopback address or ``localhost``; None (every interface) is not."""
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def exposure_risks(host: str | None, *, token: bool, tls: bool) -> list[str]:
    """What a listener on ``host`` exposes to other hosts; nothing on loopback."""
    if is_loopback(host):
        return []
    risks = []
    if not token:
        risks.append(
            "no auth_token (NETSPECTRA_API_TOKEN) is set, so anyone who can reach this port reads "
            "the flow data"
        )
    if not tls:
        risks.append(
            "no TLS (tls_cert/tls_key), so requests, answers and any token cross the network in clear"
        )
    return risks


def configured_tasks(settings: Settings) -> dict[str, str]:
    """Task name → kind ("exact", "sketch:<algorithm>") for the groups the config enables."""
    tasks: dict[str, str] = {}
    if "exact" in settings.aggregator.types:
        tasks.update({task.name: "exact" for task in settings.aggregator.exact.tasks})
    if "sketch" in settings.aggregator.types:
        tasks.update({task.name: f"sketch:{task.algorithm}" for task in settings.aggregator.sketch.tasks})
    return tasks


class ApiRole:
    """Serves gRPC on api.grpc_listen_addr and HTTP on api.http_listen_addr; ports 0 pick free ports."""

    def __init__(
        self,
        settings: Settings,
        context: StorageContext,
        *,
        telemetry: Any = None,
        alerter: Alerter | None = None,
    ) -> None:
        store_config = settings.query_store()
        if store_config is None:
            raise ConfigError(
                "api: no store to read; set api.store or enable a 'clickhouse' or 'embedded' writer"
            )
        self.settings = settings
        #: The process's netspectra.telemetry.Telemetry: GET /metrics and query latency (None: neither).
        self.telemetry = telemetry
        self.store = open_query_store(store_config, context)
        #: the alerter of this process, else the state file of one elsewhere on this host (if enabled)
        self.alerts: alert_view.AlertSource | None = None
        if alerter is not None:
            self.alerts = alerter.alerts
        elif settings.alerter.enabled:
            self.alerts = alert_view.file_source(settings.alerter.state_dir)
        self.grpc_port = 0
        self.http_port = 0
        self.ready = asyncio.Event()

    async def serve(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Serve until ``stop``; ``ready`` (and :attr:`ready`) is set once both ports accept."""
        api = self.settings.api
        grpc_host, grpc_port = split_address(api.grpc_listen_addr, "api.grpc_listen_addr")
        http_host, http_port = split_address(api.http_listen_addr, "api.http_listen_addr")
        token = api.auth_token.get_secret_value() if api.auth_token else None
        tls: Any = None
        http_tls: Any = None
        if api.tls_cert and api.tls_key:
            tls = tls_context(api.tls_cert, api.tls_key)
            http_tls = tls_context(api.tls_cert, api.tls_key, alpn=None)
        tasks = configured_tasks(self.settings)
        service = console_service(self.store, tasks, self.telemetry, self.alerts)
        server = build_server(
            [service],
            auth_token=token,
            max_message_bytes=api.max_message_bytes,
            max_concurrent_per_client=api.max_concurrent_per_client,
            handshake_timeout=api.handshake_timeout,
        )
        handler = console_handler(
            self.settings, self.store, tasks, token, service, self.telemetry, self.alerts
        )
        http = HttpServer(handler, max_concurrent_per_client=api.max_concurrent_per_client)
        for what, host in (("gRPC", grpc_host), ("HTTP", http_host)):
            for risk in exposure_risks(host, token=token is not None, tls=tls is not None):
                logger.warning("api: %s listens on %s: %s", what, host or "every interface", risk)
        await server.start(grpc_host, grpc_port, ssl=tls)
        try:
            self.grpc_port = listening_port(server) or grpc_port
            await http.start(http_host, http_port, ssl=http_tls)
            self.http_port = http.port
            logger.info(
                "Started api: gRPC on %s:%d, HTTP on %s:%d%s (store: %s)",
                grpc_host or "*",
                self.grpc_port,
                http_host or "*",
                self.http_port,
                " (TLS)" if tls else "",
                self.store.description,
            )
            self.ready.set()
            if ready is not None:
                ready.set()
            await stop.wait()
        finally:
            await http.close()
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)
            await self.store.close()
            logger.info("Stopped api")

"""The composition root: the only module that builds concrete roles from the validated settings.

Everything else receives what it needs through constructors. One process may run any subset of
roles; probe and engine in one process share one bus object (the embedded bus only works that
way), and the embedded store is shared by the engine's writers and the api's reader through one
:class:`StorageContext`. ``netspectra run`` (:class:`Application`) and ``netspectra analyze``
(:func:`analyze_capture`) build their storage and engine through the same two functions,
:func:`build_storage` and :func:`build_engine`, so a file is counted exactly as live traffic.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netspectra.config.models import EMBEDDED_BUS, Settings, WriterConfig
from netspectra.config.validate import ROLE_ORDER, validate
from netspectra.config.validate import parse_roles as parse_roles  # `run` and tests import it from here
from netspectra.errors import ConfigError
from netspectra.model.writer import SnapshotWriter
from netspectra.storage.context import StorageContext, new_incarnation

if TYPE_CHECKING:  # the engine (numba kernels) is imported only by a process that builds one
    from netspectra.alerting.alerter import Alerter
    from netspectra.analysis import AnalysisResult, ProgressCallback
    from netspectra.engine.engine import Engine
    from netspectra.supervisor import RestartPolicy, Role
    from netspectra.telemetry import MetricsServer, Telemetry

logger = logging.getLogger(__name__)


def check_role_settings(settings: Settings, roles: Iterable[str]) -> None:
    """Refuse settings these roles cannot run with, by the same rules as ``config check``.

    ``run`` has already printed these problems and exited 2; this guards every other caller of
    :class:`Application` with the one rule set (:func:`netspectra.config.validate.validate`).
    """
    roles = tuple(roles)
    problems = validate(settings, roles, launching=True)
    if problems:
        raise ConfigError("; ".join(str(problem) for problem in problems))
    if settings.bus_url == EMBEDDED_BUS and "engine" in roles and "probe" not in roles:
        logger.warning(
            "The engine runs on the embedded bus without a probe in this process: it will receive nothing. "
            "Set probe.nats_url (or engine.nats_url) to a NATS server to feed it from other processes."
        )


def build_storage(
    settings: Settings, *, engine_id: str | None = None, incarnation: str = ""
) -> StorageContext:
    """The process's store handles; ``engine_id`` (default ``engine.engine_id``) and ``incarnation``
    tag written rows (``run`` passes a fresh incarnation, so a restart adds to what was stored)."""
    return StorageContext(
        engine_id=settings.engine.engine_id if engine_id is None else engine_id, incarnation=incarnation
    )


def build_engine(
    settings: Settings,
    storage: StorageContext,
    *,
    clock: Callable[[], int] = time.time_ns,
    telemetry: Telemetry | None = None,
) -> Engine:
    """Groups from ``aggregator.types``, and each group's enabled writers from its config section.

    Writers are built by the storage registry over ``storage``'s shared handles; the engine only
    ever sees the :class:`~netspectra.model.writer.SnapshotWriter` protocol. With ``telemetry``
    each writer is wrapped to time its writes (``netspectra_snapshot_write_seconds``).
    """
    from netspectra.engine.engine import Engine
    from netspectra.engine.groups import build_groups

    groups = build_groups(settings)
    writers: dict[str, list[tuple[WriterConfig, SnapshotWriter]]] = {}
    for name in groups:
        section = getattr(settings.aggregator, name, None)
        configs = [config for config in getattr(section, "writers", ()) if config.enabled]
        writers[name] = []
        if configs:  # the registry imports the store's query layer (~20 ms): not without a writer
            from netspectra.storage.registry import build_writer

            writers[name] = [(config, build_writer(config, name, storage)) for config in configs]
        if telemetry is not None:
            writers[name] = [
                (config, telemetry.timed_writer(name, f"{name}.writers[{position}] ({config.type})", writer))
                for position, (config, writer) in enumerate(writers[name])
            ]
    return Engine(
        groups,
        writers,
        period_s=settings.aggregator.period,
        stats_interval_s=settings.engine.stats_interval,
        clock=clock,
        kernel_threads=settings.engine.kernel_threads,
    )


def build_alerter(settings: Settings, storage: StorageContext, **options: Any) -> Alerter:
    """The alerter over the store the api reads (the merged view of every engine), with its channels.

    ``options`` (``clock``, ``sleep``) are the alerter's injectable time, for tests.
    """
    from netspectra.alerting.alerter import Alerter
    from netspectra.alerting.channels import AlertmanagerChannel, Channel, SlackChannel, WebhookChannel
    from netspectra.alerting.readings import StoreReader
    from netspectra.storage.registry import open_query_store

    store_config = settings.query_store()
    if store_config is None:
        raise ConfigError(
            "alerter: no store to read; set api.store or enable a 'clickhouse' or 'embedded' writer"
        )
    config = settings.alerter
    http = {"webhook": WebhookChannel, "slack": SlackChannel, "alertmanager": AlertmanagerChannel}
    channels: list[Channel] = []
    smtp = settings.smtp
    for channel in config.channels:
        if channel.type == "email":
            if smtp is not None:
                from netspectra.alerting.email import EmailChannel

                channels.append(EmailChannel(smtp, name=channel.name))
        else:
            channels.append(http[channel.type](channel))
    if smtp is not None and smtp.host and not any(c.type == "email" for c in config.channels):
        from netspectra.alerting.email import EmailChannel

        channels.append(EmailChannel(smtp))  # Go mails every alert when smtp: is set
    intervals = {
        name: max(
            (w.snapshot_interval for w in getattr(settings.aggregator, name).writers if w.enabled),
            default=60.0,
        )
        for name in ("exact", "sketch")
    }
    reader = StoreReader(
        open_query_store(store_config, storage),
        limit=config.max_flows_per_rule,
        # an engine is gone when its newest snapshot is 3 intervals old; a hitter, 1.5
        engine_staleness=3 * intervals["exact"] + config.check_interval,
        hitter_freshness=1.5 * intervals["sketch"],
        clock=options.get("clock", time.time),
    )
    return Alerter(config, reader, channels, **options)


def ai_notice(settings: Settings) -> str | None:
    """The start-up line for Go's ``ai:`` / ``alerter.ai_analysis`` (accepted, never used), or None."""
    if settings.ai is None and not settings.alerter.ai_analysis.enabled:
        return None
    return (
        "LLM analysis of alerts (Go's ai: / alerter.ai_analysis) is not offered: NetSpectra reaches no "
        "model service; the settings are accepted and ignored, alerts are sent without analysis"
    )


async def analyze_capture(
    path: str | Path,
    settings: Settings,
    *,
    progress: ProgressCallback | None = None,
    batch_size: int = 65536,
    flows: bool = False,
) -> AnalysisResult:
    """``netspectra analyze``: ``path`` through the engine ``run`` builds; writers get the final snapshot.

    Cancelling it (Ctrl-C) returns what was counted with ``interrupted`` set (see
    :func:`netspectra.analysis.analyze_file`). Raises CaptureError when the file cannot be opened
    and ConfigError when the settings name an unknown group or writer. ``flows``: the file is a
    capture of NetFlow/IPFIX/sFlow export datagrams, whose records are counted with their weights.
    """
    from netspectra.analysis import analyze_file, analyze_flow_file

    storage = build_storage(settings, engine_id=settings.engine.engine_id or "analyze")
    try:
        engine = build_engine(settings, storage)
        _keep_states_only_where_stored(engine)
        if flows:
            return await analyze_flow_file(path, engine)
        return await analyze_file(
            path, engine, progress=progress, batch_size=batch_size, compat=settings.probe.compat
        )
    finally:
        await storage.close()


def _keep_states_only_where_stored(engine: Engine) -> None:
    """Sketch states (zstd through pyarrow: ~80 ms to import) only for a group a writer reads them of.

    An analysis takes one snapshot, the period's first epoch, whose hitters are the same with or
    without the state beside them; only a store writer reads the state (the text and file writers
    say ``reads_sketch_state = False``). A live engine keeps them: its later snapshots' hitters
    come from the merged epochs.
    """
    written = {slot.group for slot in engine.writer_slots if getattr(slot.writer, "reads_sketch_state", True)}
    for name, group in engine.groups.items():
        if name not in written and getattr(group, "include_state", False) is True:
            group.include_state = False  # type: ignore[attr-defined]


class Application:
    """Builds the requested roles, runs them under the supervisor, and closes shared resources."""

    def __init__(self, settings: Settings, roles: Iterable[str], *, grace_s: float = 30.0) -> None:
        self.settings = settings
        self.roles = tuple(name for name in ROLE_ORDER if name in set(roles))
        self.grace_s = grace_s
        # Every start is a new incarnation: its rows add to the previous ones' (docs: "Restarts").
        self.context = build_storage(settings, incarnation=new_incarnation())
        self.buses: list[Any] = []
        self.built: dict[str, Role] = {}
        self.telemetry: Telemetry | None = None
        self.metrics_server: MetricsServer | None = None

    def _open_buses(self) -> tuple[Any, Any]:
        """The probe's and the engine's bus: one shared object when they point at the same server.

        The probe publishes with ``probe.nats_url``/``probe.auth``; the engine subscribes with its own
        overrides when set (as in the Go project). The embedded bus must be one object for both.
        """
        from netspectra.bus import open_bus

        settings = self.settings
        probe_target = (settings.probe.nats_url, settings.probe.auth)
        engine_target = (settings.bus_url, settings.engine_auth)
        probe_bus = engine_bus = None
        if "probe" in self.roles:
            probe_bus = open_bus(probe_target[0], probe_target[1], name="netspectra-probe")
            self.buses.append(probe_bus)
        if "engine" in self.roles:
            if probe_bus is not None and engine_target == probe_target:
                engine_bus = probe_bus
            else:
                engine_bus = open_bus(engine_target[0], engine_target[1], name="netspectra-engine")
                self.buses.append(engine_bus)
        return probe_bus, engine_bus

    def build(self) -> list[tuple[str, Role]]:
        """Construct every role (no I/O yet); raises ConfigError on settings that cannot work."""
        check_role_settings(self.settings, self.roles)
        from netspectra.telemetry import Telemetry

        self.telemetry = telemetry = Telemetry(lambda: self.built)
        built: list[tuple[str, Role]] = []
        probe_bus, engine_bus = self._open_buses()
        if "probe" in self.roles:
            from netspectra.probe.role import ProbeRole

            built.append(("probe", ProbeRole(self.settings, probe_bus)))
        if "engine" in self.roles:
            from netspectra.engine.role import EngineRole

            engine = build_engine(self.settings, self.context, telemetry=telemetry)
            role = EngineRole(self.settings, engine_bus, engine, observe_batch=telemetry.observe_batch)
            built.append(("engine", role))
        alerter = None
        if "api" in self.roles and self.settings.alerter.enabled:
            alerter = build_alerter(self.settings, self.context)
        if "api" in self.roles:
            from netspectra.api.role import ApiRole

            api_role = ApiRole(self.settings, self.context, telemetry=telemetry, alerter=alerter)
            built.append(("api", api_role))
        if alerter is not None:
            # beside the api (it reads the store the api reads); started before it, stopped after
            built.append(("alerter", alerter))
        self.built = dict(built)
        return built

    async def run(self, stop: asyncio.Event, *, policy: RestartPolicy | None = None) -> int:
        """Serve until ``stop`` is set; returns the process exit code."""
        from netspectra.supervisor import Supervisor

        roles = self.build()
        notice = ai_notice(self.settings)
        if notice is not None:
            logger.warning("%s", notice)
        logger.info("Starting roles: %s", ", ".join(name for name, _ in roles))
        supervisor = Supervisor(roles, policy=policy, grace_s=self.grace_s)
        try:
            await self.serve_metrics()
            return await supervisor.run(stop)
        finally:
            await self.close()

    async def serve_metrics(self) -> None:
        """``GET /metrics`` on ``metrics.listen_addr`` unless the api serves it (or it is empty).

        A port already taken (a second process on one host with the default) is a WARNING, not
        a failure: the self-metrics are not the traffic, and the process must not stop counting.
        """
        address = self.settings.metrics.listen_addr
        if "api" in self.roles or not address or self.telemetry is None:
            return
        from netspectra.config.models import parse_listen_address
        from netspectra.telemetry import MetricsServer

        host, port = parse_listen_address(address)
        server = MetricsServer(self.telemetry)
        try:
            await server.start(host, port)
        except OSError as error:
            logger.warning(
                "Not serving /metrics: cannot listen on %s (metrics.listen_addr): %s",
                address,
                error.strerror or error,
            )
            return
        self.metrics_server = server
        logger.info("Serving Prometheus metrics on http://%s:%d/metrics", host or "*", server.port)

    async def close(self) -> None:
        if self.metrics_server is not None:
            await self.metrics_server.close()
            self.metrics_server = None
        for bus in self.buses:
            await bus.close()
        self.buses.clear()
        await self.context.close()


def install_signal_handlers(stop: asyncio.Event, task: asyncio.Task[Any]) -> None:
    """First SIGINT/SIGTERM asks for an orderly stop; a second one cancels everything at once."""
    loop = asyncio.get_running_loop()

    def _on_signal(signum: int) -> None:
        if stop.is_set():
            logger.warning("Second %s: stopping immediately", signal.Signals(signum).name)
            task.cancel()
            return
        logger.info("Received %s: stopping (again to force)", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _on_signal, signum)


async def serve_forever(application: Application) -> int:
    """Run ``application`` with signal handling; the entry point of ``netspectra run``."""
    stop = asyncio.Event()
    current = asyncio.current_task()
    assert current is not None
    install_signal_handlers(stop, current)
    try:
        return await application.run(stop)
    except asyncio.CancelledError:
        return 130

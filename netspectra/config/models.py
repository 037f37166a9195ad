"""The validated configuration: frozen pydantic models, loaded once and handed down.

Go2NetSpectra's own ``config.yaml`` loads unchanged: its spellings (``count_thereshold``,
``skt_type``, ``key_fields``, ``gob`` writers, ``num_shards``, ``num_workers``) are accepted
as aliases or as known-but-unused settings. Our own names are the clearer ones.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from netspectra.config.durations import Duration
from netspectra.model.fields import KeyField
from netspectra.wire.subjects import DEFAULT_QUEUE_GROUP, DEFAULT_SUBJECT

#: ``nats_url`` value that selects the in-process bus (no server needed).
EMBEDDED_BUS = "embedded"
#: Go's ``skt_type`` numbers, mapped to our entry-point names.
GO_SKETCH_TYPES = {0: "count_min", 1: "super_spread"}


def redact_url(url: str) -> str:
    """``nats://user:secret@host:4222`` → ``nats://host:4222`` (for every comma-separated URL).

    Here rather than in the NATS client so that ``config check`` can show the bus without
    importing it.
    """
    shown = []
    for part in url.split(","):
        split = urlsplit(part.strip())
        netloc = split.netloc.rsplit("@", 1)[-1]
        shown.append(urlunsplit((split.scheme, netloc, split.path, split.query, split.fragment)))
    return ",".join(shown)


def join_server_urls(value: Any) -> Any:
    """A YAML list of NATS servers → the comma-separated text Go's ``nats.Connect`` takes.

    ``nats_url`` stays one string everywhere (Go's spelling, ``"nats://a:4222,nats://b:4222"``,
    loads unchanged); a list is the same thing written the YAML way. Empty entries and
    ``embedded`` among real servers are refused by name.
    """
    if isinstance(value, (list, tuple)):
        if not value or not all(isinstance(item, str) for item in value):
            raise ValueError("a list of NATS servers must hold one or more URL strings")
        value = ",".join(item.strip() for item in value)
    if isinstance(value, str) and "," in value:
        parts = [part.strip() for part in value.split(",")]
        if not all(parts):
            raise ValueError(f"{redact_url(value)!r} has an empty server between commas")
        if EMBEDDED_BUS in parts:
            raise ValueError(f"{EMBEDDED_BUS!r} is the in-process bus; it cannot be one server of a list")
        value = ",".join(parts)
    return value


class Model(BaseModel):
    """Base of every config model: immutable, unknown keys rejected so typos are caught."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


# --- bus -------------------------------------------------------------------------------------


class NatsAuth(Model):
    """NATS credentials and TLS; secrets may come from the environment instead of the file."""

    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    creds_file: str | None = None
    nkeys_seed_file: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None


class PersistenceConfig(Model):
    """Go feature: the probe also writes what it captures to rotating files."""

    enabled: bool = False
    path: str = "captures"
    encoding: Literal["pcap", "text", "gob"] = "pcap"
    rotate_packets: int = Field(1_000_000, gt=0)
    num_workers: int = Field(1, ge=1, description="Go setting; accepted, one writer thread is used")
    channel_buffer_size: int = Field(10_000, ge=1)


class ProbeConfig(Model):
    """Where packets come from and where the probe publishes them."""

    #: One NATS server, or several servers of one cluster (comma-separated as in Go, or a YAML
    #: list): the clients fail over among them and learn the cluster's other nodes from it.
    nats_url: str = EMBEDDED_BUS
    subject: str = DEFAULT_SUBJECT
    source: Literal["afpacket", "dumpcap", "pyshark", "file"] = "afpacket"
    iface: str | None = None
    pcap: str | None = None
    bpf_filter: str = ""
    display_filter: str = ""
    snaplen: int = Field(262_144, ge=64, le=262_144)
    buffer_mb: int = Field(64, ge=1)
    fanout_group: int | None = Field(None, ge=0, le=65_535)
    batch: int = Field(0, ge=0, description="0 = one PacketInfo per message (Go-compatible)")
    rate: float | None = Field(None, gt=0, description="replay packets per second")
    speed: float | None = Field(None, gt=0, description="replay at this multiple of capture time")
    auth: NatsAuth = NatsAuth()
    persistence: PersistenceConfig = PersistenceConfig()

    _servers = field_validator("nats_url", mode="before")(join_server_urls)

    @model_validator(mode="after")
    def _one_pace(self) -> ProbeConfig:
        if self.rate is not None and self.speed is not None:
            raise ValueError("set at most one of 'rate' and 'speed'")
        return self


class EngineConfig(Model):
    """Engine-side overrides of the bus settings, and batching."""

    nats_url: str | None = None
    subject: str | None = None
    queue_group: str = DEFAULT_QUEUE_GROUP
    engine_id: str = ""
    batch_size: int = Field(8192, ge=4096, description="packets gathered before a kernel run")
    flush_interval: Duration = 0.05
    pending_msgs_limit: int = Field(2_000_000, ge=1)
    pending_bytes_limit: int = Field(512 * 1024 * 1024, ge=1)
    stats_interval: Duration = 10.0
    kernel_threads: int = Field(
        0,
        ge=0,
        description="threads that count one batch, its tasks spread over them (0 = one per CPU core)",
    )
    auth: NatsAuth | None = None

    _servers = field_validator("nats_url", mode="before")(join_server_urls)


# --- writers ---------------------------------------------------------------------------------


_RETENTION = (
    "how long flow_metrics and heavy_hitters keep rows (flow_latest with them; 0 = forever): "
    "a TTL where the server has one, else monthly partitions dropped"
)


class PathWriterOptions(Model):
    root_path: str = "snapshots"


class ClickHouseOptions(Model):
    host: str = "localhost"
    port: int = Field(9000, ge=1, le=65_535)
    database: str = "default"
    username: str = "default"
    password: SecretStr = SecretStr("")
    cloud: bool = False
    secure: bool = False
    pool_size: int = Field(4, ge=1)
    queue_dir: str = "spool"
    max_queued_snapshots: int = Field(64, ge=1)
    #: A cluster of the servers' ``remote_servers``: the tables become local tables per shard with
    #: Distributed tables in front (storage/cluster.py); None = one server, Go's tables as they are.
    cluster: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")
    retention: Duration = Field(0.0, ge=0, description=_RETENTION)


class EmbeddedStoreOptions(Model):
    path: str = "netspectra-data"
    #: Snapshots kept in memory besides the spool (``<path>.spool``, on the same disk as the
    #: store: when that disk is full they are the only copy, and the oldest beyond this is dropped).
    max_queued_snapshots: int = Field(64, ge=1)
    retention: Duration = Field(0.0, ge=0, description=_RETENTION)


WriterType = Literal["file", "gob", "text", "clickhouse", "embedded"]


class WriterConfig(Model):
    """One writer of a group; ``gob`` (Go) is read as our JSON Lines ``file`` writer."""

    type: WriterType
    enabled: bool = True
    snapshot_interval: Duration = 60.0
    file: PathWriterOptions | None = None
    gob: PathWriterOptions | None = None
    text: PathWriterOptions | None = None
    clickhouse: ClickHouseOptions | None = None
    embedded: EmbeddedStoreOptions | None = None

    @field_validator("snapshot_interval")
    @classmethod
    def _positive_interval(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("snapshot_interval must be greater than zero")
        return value

    @property
    def kind(self) -> str:
        """The writer implementation: Go's ``gob`` is our ``file``."""
        return "file" if self.type == "gob" else self.type

    @property
    def path_options(self) -> PathWriterOptions:
        return self.file or self.gob or self.text or PathWriterOptions()

    @property
    def clickhouse_options(self) -> ClickHouseOptions:
        return self.clickhouse or ClickHouseOptions()

    @property
    def embedded_options(self) -> EmbeddedStoreOptions:
        return self.embedded or EmbeddedStoreOptions()


# --- tasks -----------------------------------------------------------------------------------

KeyFields = Annotated[tuple[KeyField, ...], Field(min_length=1)]


def _no_duplicate_fields(fields: tuple[KeyField, ...]) -> tuple[KeyField, ...]:
    if len(set(fields)) != len(fields):
        raise ValueError("a field is listed twice")
    return fields


class ExactTaskConfig(Model):
    name: str = Field(min_length=1)
    key_fields: KeyFields
    num_shards: int = Field(1, ge=1, description="Go setting; accepted, not needed by our table")

    _check_fields = field_validator("key_fields")(_no_duplicate_fields)


class SketchTaskConfig(BaseModel):
    """A sketch task; algorithm parameters stay as extra keys for the plugin's own model."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    name: str = Field(min_length=1)
    algorithm: str = ""
    skt_type: int | None = None
    flow_fields: KeyFields
    element_fields: tuple[KeyField, ...] = ()

    _check_flow = field_validator("flow_fields")(_no_duplicate_fields)
    _check_elements = field_validator("element_fields")(_no_duplicate_fields)

    @model_validator(mode="after")
    def _resolve_algorithm(self) -> SketchTaskConfig:
        if self.algorithm:
            return self
        if self.skt_type is None:
            raise ValueError("set 'algorithm' (e.g. count_min) or Go's 'skt_type' (0 or 1)")
        if self.skt_type not in GO_SKETCH_TYPES:
            raise ValueError(
                f"skt_type {self.skt_type} is unknown; Go defines 0 (count_min) and 1 (super_spread)"
            )
        object.__setattr__(self, "algorithm", GO_SKETCH_TYPES[self.skt_type])
        return self

    @property
    def params(self) -> dict[str, Any]:
        """The algorithm's own parameters, for its params model to validate."""
        return dict(self.model_extra or {})


class ExactGroupConfig(Model):
    writers: tuple[WriterConfig, ...] = ()
    tasks: tuple[ExactTaskConfig, ...] = ()

    @field_validator("tasks")
    @classmethod
    def _unique_names(cls, tasks: tuple[ExactTaskConfig, ...]) -> tuple[ExactTaskConfig, ...]:
        _require_unique([t.name for t in tasks])
        return tasks


class SketchGroupConfig(Model):
    writers: tuple[WriterConfig, ...] = ()
    tasks: tuple[SketchTaskConfig, ...] = ()

    @field_validator("tasks")
    @classmethod
    def _unique_names(cls, tasks: tuple[SketchTaskConfig, ...]) -> tuple[SketchTaskConfig, ...]:
        _require_unique([t.name for t in tasks])
        return tasks


def _require_unique(names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"task name {name!r} is used twice")
        seen.add(name)


class AggregatorConfig(Model):
    types: tuple[str, ...] = ("exact", "sketch")
    period: Duration = 720 * 3600.0
    num_workers: int = Field(1, ge=1, description="Go setting; accepted, batches run in numba kernels")
    size_of_packet_channel: int = Field(10_000, ge=1, description="Go setting; accepted")
    exact: ExactGroupConfig = ExactGroupConfig()
    sketch: SketchGroupConfig = SketchGroupConfig()

    @field_validator("period")
    @classmethod
    def _positive_period(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("period must be greater than zero")
        return value

    @model_validator(mode="after")
    def _tasks_unique_across_groups(self) -> AggregatorConfig:
        _require_unique([t.name for t in self.exact.tasks] + [t.name for t in self.sketch.tasks])
        return self


# --- api, logging, root ----------------------------------------------------------------------


class StoreConfig(Model):
    """Where the API reads; by default the first enabled storage writer of the aggregator."""

    type: Literal["clickhouse", "embedded"]
    clickhouse: ClickHouseOptions | None = None
    embedded: EmbeddedStoreOptions | None = None


def parse_listen_address(address: str) -> tuple[str | None, int]:
    """``":50051"`` → (None = every interface, 50051); ``"127.0.0.1:0"`` and ``"[::1]:80"`` too.

    Raises ValueError saying what a listen address looks like (a bare ``"50051"`` is not one).
    """
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65_535:
        raise ValueError(f"{address!r} is not HOST:PORT (e.g. ':50051', '127.0.0.1:0' or '[::1]:50051')")
    return (host.strip("[]") or None), int(port_text)


class ApiConfig(Model):
    """The query side. Closed by default: loopback only, no browser origin allowed, every request bounded."""

    grpc_listen_addr: str = "127.0.0.1:50051"
    http_listen_addr: str = "127.0.0.1:8080"
    tls_cert: str | None = None
    tls_key: str | None = None
    auth_token: SecretStr | None = None
    store: StoreConfig | None = None
    #: Browser origins (``https://grafana.example:3000``) allowed to call the HTTP side; empty =
    #: none (no Access-Control-Allow-Origin header; a request carrying another Origin is 403).
    cors_origins: tuple[str, ...] = ()
    #: Largest gRPC request and reply, in bytes (grpc-go and grpcio use the same 4 MiB default).
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    #: Targets one Grafana /query may name (each is one store query).
    max_query_targets: int = Field(100, ge=1, le=100_000)
    #: Seconds a gRPC connection may take to send the HTTP/2 preface before it is closed.
    handshake_timeout: Duration = 10.0
    #: Calls one client address may have running at once (gRPC and HTTP each); more wait their turn.
    max_concurrent_per_client: int = Field(8, ge=1, le=10_000)

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        for origin in origins:
            if origin == "*" or not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(
                    f"{origin!r} is not an origin; write scheme://host[:port] (e.g. "
                    "'http://localhost:3000'); '*' is not accepted"
                )
        return tuple(origin.lower() for origin in origins)

    @field_validator("grpc_listen_addr", "http_listen_addr")
    @classmethod
    def _listen_address(cls, value: str) -> str:
        parse_listen_address(value)
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> ApiConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("set both 'tls_cert' and 'tls_key', or neither")
        return self


class LoggingConfig(Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class Settings(Model):
    """The whole configuration file."""

    probe: ProbeConfig = ProbeConfig()
    engine: EngineConfig = EngineConfig()
    aggregator: AggregatorConfig = AggregatorConfig()
    api: ApiConfig = ApiConfig()
    logging: LoggingConfig = LoggingConfig()

    @property
    def bus_url(self) -> str:
        """The engine's NATS URL: its own override, else the probe's (as in the Go project)."""
        return self.engine.nats_url or self.probe.nats_url

    @property
    def bus_subject(self) -> str:
        return self.engine.subject or self.probe.subject

    @property
    def engine_auth(self) -> NatsAuth:
        return self.engine.auth or self.probe.auth

    def query_store(self) -> StoreConfig | None:
        """The store the API and ``query`` read: ``api.store``, else the first enabled storage writer."""
        if self.api.store is not None:
            return self.api.store
        for group in (self.aggregator.exact, self.aggregator.sketch):
            for writer in group.writers:
                if writer.enabled and writer.kind == "clickhouse":
                    return StoreConfig(type="clickhouse", clickhouse=writer.clickhouse_options)
                if writer.enabled and writer.kind == "embedded":
                    return StoreConfig(type="embedded", embedded=writer.embedded_options)
        return None

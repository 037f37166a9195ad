"""The validated configuration: frozen pydantic models, loaded once and handed down.

Go2NetSpectra's own ``config.yaml`` loads unchanged: its spellings (``count_thereshold``,
``skt_type``, ``key_fields``, ``gob`` writers, ``num_shards``, ``num_workers``) are accepted
as aliases or as known-but-unused settings. Our own names are the clearer ones.

No ``from __future__ import annotations`` here: pydantic would evaluate every field's annotation
from its string (a compile and an eval each) when the class is made, which every command that
reads a config pays (~3 % of a ``config check``); evaluated by Python as the class body runs, they
cost nothing more.
"""

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AliasChoices,
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

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, defer_build=True)


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


#: Where a flow collector listens when ``probe.listen`` is not set: loopback only, so a probe
#: started without thought never opens a collector to the network (set "0.0.0.0:2055" for that).
DEFAULT_LISTEN = {"netflow": "127.0.0.1:2055", "sflow": "127.0.0.1:6343"}


def _listen_address(value: str) -> str:
    """``host:port``, ``:port`` (every IPv4 address) or ``[v6]:port``; the port 1..65535."""
    _host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65_535:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. '0.0.0.0:2055', ':6343', '[::]:2055')")
    return value


class FlowExportConfig(Model):
    """NetFlow/IPFIX/sFlow collection (``probe.source: netflow`` or ``sflow``); see docs/flow-export.md."""

    allow: list[str] | None = Field(None, description="exporter addresses accepted (None: every exporter)")
    sampling_overrides: dict[str, int] = Field(
        default_factory=dict, description="exporter address -> sampling rate used instead of what it says"
    )
    pending_ttl: Duration = 60.0
    max_pending: int = Field(4096, ge=0)
    template_path: str | None = Field(None, description="file the templates are kept in across restarts")
    batch_datagrams: int = Field(1024, ge=1, description="datagrams decoded per kernel run at most")
    #: Bytes of kernel receive buffer per socket: what holds a burst while a batch is decoded. 32 MiB
    #: holds ~29 k datagrams of 24 v9 records on loopback (~3.5 s at 200 k records/s, measured); the
    #: kernel caps it at net.core.rmem_max unless the process may pass the cap (a WARNING says so).
    receive_buffer: int = Field(32 << 20, ge=4096, description="socket receive buffer in bytes (SO_RCVBUF)")

    @field_validator("sampling_overrides")
    @classmethod
    def _positive_rates(cls, value: dict[str, int]) -> dict[str, int]:
        bad = [address for address, rate in value.items() if rate < 1]
        if bad:
            raise ValueError(f"a sampling rate is at least 1 (got {', '.join(bad)})")
        return value


#: Sources whose packets our frame parser does not decode, so ``compat`` cannot apply to them.
_SOURCES_WITHOUT_OUR_PARSER = {
    "pyshark": "tshark's dissectors decode its packets",
    "netflow": "it counts flow records, and Go2NetSpectra has no flow input",
    "sflow": "it counts flow samples, and Go2NetSpectra has no flow input",
}


class ProbeConfig(Model):
    """Where packets come from and where the probe publishes them."""

    #: One NATS server, or several servers of one cluster (comma-separated as in Go, or a YAML
    #: list): the clients fail over among them and learn the cluster's other nodes from it.
    nats_url: str = EMBEDDED_BUS
    subject: str = DEFAULT_SUBJECT
    source: Literal["afpacket", "dumpcap", "pyshark", "file", "netflow", "sflow"] = "afpacket"
    # default=[], not default_factory=list: pydantic copies it per instance all the same, and the
    # factory made it ask inspect.signature(list), whose first call compiles tokenize's regexes
    # (~10 ms of every `config check`)
    listen: list[str] = Field(default=[], description="UDP addresses of a netflow/sflow collector")
    flows: FlowExportConfig = Field(default_factory=FlowExportConfig)
    iface: str | None = None
    pcap: str | None = None
    bpf_filter: str = ""
    display_filter: str = ""
    snaplen: int = Field(262_144, ge=64, le=262_144)
    #: ``go``: decode frames as gopacket 1.1.19 (Go2NetSpectra's parser) does, so a mixed Go/Python
    #: deployment counts the same keys; unset: as tshark does (docs/go-compatibility.md).
    compat: Literal["go"] | None = None
    buffer_mb: int = Field(64, ge=1)
    fanout_group: int | None = Field(None, ge=0, le=65_535)
    batch: int = Field(0, ge=0, description="0 = one PacketInfo per message (Go-compatible)")
    rate: float | None = Field(None, gt=0, description="replay packets per second")
    speed: float | None = Field(None, gt=0, description="replay at this multiple of capture time")
    auth: NatsAuth = Field(default_factory=NatsAuth)
    persistence: PersistenceConfig = Field(default_factory=PersistenceConfig)

    _servers = field_validator("nats_url", mode="before")(join_server_urls)

    @field_validator("listen", mode="before")
    @classmethod
    def _listen_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("listen")
    @classmethod
    def _listen_addresses(cls, value: list[str]) -> list[str]:
        return [_listen_address(address) for address in value]

    @property
    def listen_addresses(self) -> list[str]:
        """``listen``, or the source's loopback default."""
        return self.listen or ([DEFAULT_LISTEN[self.source]] if self.source in DEFAULT_LISTEN else [])

    @model_validator(mode="after")
    def _one_pace(self) -> Self:
        if self.rate is not None and self.speed is not None:
            raise ValueError("set at most one of 'rate' and 'speed'")
        if self.compat is not None and self.source in _SOURCES_WITHOUT_OUR_PARSER:
            raise ValueError(
                f"compat: {self.compat} applies to the sources our frame parser decodes (afpacket, "
                f"dumpcap, file, and analyze); {self.source!r} does not use it "
                f"({_SOURCES_WITHOUT_OUR_PARSER[self.source]})"
            )
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

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True, defer_build=True)

    name: str = Field(min_length=1)
    algorithm: str = ""
    skt_type: int | None = None
    flow_fields: KeyFields
    element_fields: tuple[KeyField, ...] = ()

    _check_flow = field_validator("flow_fields")(_no_duplicate_fields)
    _check_elements = field_validator("element_fields")(_no_duplicate_fields)

    @model_validator(mode="after")
    def _resolve_algorithm(self) -> Self:
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
    exact: ExactGroupConfig = Field(default_factory=ExactGroupConfig)
    sketch: SketchGroupConfig = Field(default_factory=SketchGroupConfig)

    @field_validator("period")
    @classmethod
    def _positive_period(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("period must be greater than zero")
        return value

    @model_validator(mode="after")
    def _tasks_unique_across_groups(self) -> Self:
        _require_unique([t.name for t in self.exact.tasks] + [t.name for t in self.sketch.tasks])
        return self


# --- alerting ----------------------------------------------------------------------------------

#: Go's metrics: task totals of an exact task, a reported hitter's value of a sketch task.
GO_EXACT_METRICS = ("total_packets", "total_bytes", "total_flows")
GO_SKETCH_METRICS = ("heavy_hitter_count", "heavy_hitter_size", "super_spreader_spread")
#: Ours: one value per flow of an exact task (with ``window``: that flow's packets/s or bytes/s).
FLOW_METRICS = ("flow_packets", "flow_bytes")
AlertMetric = Literal[
    "total_packets",
    "total_bytes",
    "total_flows",
    "heavy_hitter_count",
    "heavy_hitter_size",
    "super_spreader_spread",
    "flow_packets",
    "flow_bytes",
]
#: Metrics that only grow within a period, so a ``window`` turns them into a per-second rate.
COUNTER_METRICS = frozenset(
    {"total_packets", "total_bytes", "heavy_hitter_count", "heavy_hitter_size", *FLOW_METRICS}
)
AlertOperator = Literal[">", "<", "=", ">=", "<=", "!="]
Severity = Literal["info", "warning", "critical"]


def _positive(value: float, what: str) -> float:
    if value <= 0:
        raise ValueError(f"{what} must be greater than zero")
    return value


class BaselineConfig(Model):
    """Fire on a deviation from the learned normal of the rule's metric instead of a fixed threshold.

    ``ewma``: an exponentially weighted mean (weight ``alpha`` per 30 s, the default check
    interval: the same normal is learned at any check interval). ``seasonal_median``: the
    median of the values seen at the same time of the ``season`` (e.g. the same minute of the day)
    in the last ``seasons`` seasons. ``direction: below`` with ``factor`` catches traffic that
    stopped (a value under baseline / factor); ``above`` a surge; ``both`` either.
    """

    method: Literal["ewma", "seasonal_median"] = "ewma"
    alpha: float = Field(0.2, gt=0, le=1)
    season: Duration = 86_400.0
    seasons: int = Field(7, ge=1, le=1000)
    factor: float = Field(3.0, gt=1)
    direction: Literal["above", "below", "both"] = "both"
    #: Checks learned before the baseline may fire (a fresh baseline knows nothing).
    warmup: int = Field(5, ge=1)
    #: A baseline below this is treated as this (so a near-idle series does not fire on noise).
    floor: float = Field(1.0, ge=0)


class AlertRuleConfig(Model):
    """One rule. Go's four keys (name, task_name, metric, operator, threshold) mean what they mean there."""

    name: str = Field(min_length=1)
    task_name: str = Field(min_length=1, validation_alias=AliasChoices("task_name", "task"))
    metric: AlertMetric
    operator: AlertOperator = ">"
    threshold: float = 0.0
    #: A rate: the metric's growth over this window, per second (counters only).
    window: Duration | None = None
    baseline: BaselineConfig | None = None
    #: The condition must hold this long before the alert fires (pending until then).
    for_: Duration = Field(0.0, validation_alias=AliasChoices("for", "for_"))
    severity: Severity = "warning"
    labels: dict[str, str] = Field(default_factory=dict)
    #: Channel names this rule notifies (empty: every channel).
    channels: tuple[str, ...] = ()
    repeat_interval: Duration | None = None
    cooldown: Duration | None = None

    @field_validator("window")
    @classmethod
    def _window(cls, value: float | None) -> float | None:
        return None if value is None else _positive(value, "window")

    @model_validator(mode="after")
    def _rate_of_a_counter(self) -> Self:
        if self.window is not None and self.metric not in COUNTER_METRICS:
            raise ValueError(
                f"window: {self.metric} is not a counter, so it has no rate; use window with "
                + ", ".join(sorted(COUNTER_METRICS))
            )
        return self

    @property
    def per_flow(self) -> bool:
        """One alert per flow (hitter metrics and flow metrics) rather than one per task."""
        return self.metric not in GO_EXACT_METRICS


class ChannelConfig(Model):
    """Where notifications go: ``webhook`` (JSON, HMAC-SHA256 signed with ``secret``), ``slack``
    (an incoming-webhook URL), ``alertmanager`` (Prometheus Alertmanager's base URL, API v2) or
    ``email`` (the ``smtp:`` section)."""

    type: Literal["webhook", "slack", "alertmanager", "email"]
    name: str = ""
    url: str = ""
    secret: SecretStr | None = None
    timeout: Duration = 10.0
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _url(self) -> Self:
        if self.type != "email" and not re.fullmatch(r"https?://\S+", self.url):
            raise ValueError(f"a {self.type} channel needs url: http(s)://...")
        if not self.name:
            object.__setattr__(self, "name", self.type)
        return self


class AiAnalysisConfig(Model):
    """Go's LLM analysis of an alert: accepted, not offered (no model service is reachable)."""

    enabled: bool = False
    service_addr: str = ""


class AlerterConfig(Model):
    """Go's ``alerter:`` section plus state, channels and delivery. Off unless ``enabled``."""

    enabled: bool = False
    check_interval: Duration = 30.0
    rules: tuple[AlertRuleConfig, ...] = ()
    channels: tuple[ChannelConfig, ...] = ()
    #: A firing alert is notified again this often while it holds (Alertmanager's default).
    repeat_interval: Duration = 4 * 3600.0
    #: After a resolve, the same (rule, flow) firing again within this time is not notified again.
    cooldown: Duration = 300.0
    #: Where alert state, history and undelivered notifications live across restarts.
    state_dir: str = "alerts"
    history_limit: int = Field(10_000, ge=1)
    #: Per-flow rules report at most this many flows per check (largest first).
    max_flows_per_rule: int = Field(100, ge=1, le=100_000)
    #: Delivery: first retry after this, doubling up to retry_max.
    retry_initial: Duration = 1.0
    retry_max: Duration = 60.0
    ai_analysis: AiAnalysisConfig = Field(default_factory=AiAnalysisConfig)

    @field_validator("check_interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        return _positive(value, "check_interval")

    @field_validator("rules")
    @classmethod
    def _unique_rules(cls, rules: tuple[AlertRuleConfig, ...]) -> tuple[AlertRuleConfig, ...]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} is used twice")
            seen.add(rule.name)
        return rules

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, channels: tuple[ChannelConfig, ...]) -> tuple[ChannelConfig, ...]:
        names = [channel.name for channel in channels]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"channel name {name!r} is used twice; give each a name")
        return channels


class SmtpConfig(Model):
    """Go's ``smtp:`` section. ``security``: unset = STARTTLS when the server offers it (as Go's
    net/smtp does; implicit TLS on port 465), ``starttls`` (required), ``tls`` or ``none``;
    ``tls_ca`` (ours) a CA file to trust besides the system's."""

    host: str = ""
    port: int = Field(587, ge=1, le=65_535)
    username: str = ""
    password: SecretStr = SecretStr("")
    sender: str = Field("", validation_alias=AliasChoices("from", "sender"))
    to: tuple[str, ...] = ()
    security: Literal["starttls", "tls", "none"] | None = None
    tls_ca: str | None = None
    timeout: Duration = 30.0

    @field_validator("to", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @property
    def mode(self) -> str:
        """``tls``, ``starttls``, ``none`` or ``opportunistic`` (STARTTLS if offered)."""
        return self.security or ("tls" if self.port == 465 else "opportunistic")


class AiConfig(BaseModel):
    """Go's ``ai:`` section: read and kept, never used (LLM analysis is not offered)."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True, defer_build=True)

    provider: str = ""
    api_key: SecretStr = SecretStr("")
    model: str = ""


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

    #: Go's head config spells it ``rpc_listen_addr``; both are read.
    grpc_listen_addr: str = Field(
        "127.0.0.1:50051", validation_alias=AliasChoices("grpc_listen_addr", "rpc_listen_addr")
    )
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
    def _tls_pair(self) -> Self:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("set both 'tls_cert' and 'tls_key', or neither")
        return self


@dataclass(frozen=True)
class _DisagreeingAddresses:
    """``metrics_listen_addr`` and ``metrics.listen_addr`` both set, to different values."""

    top: Any
    section: Any


class MetricsConfig(Model):
    """Prometheus self-metrics of a process without the api role (the api serves /metrics itself)."""

    #: Where a probe- or engine-only process serves ``GET /metrics``; empty = not served.
    listen_addr: str = "127.0.0.1:9464"

    @field_validator("listen_addr", mode="before")
    @classmethod
    def _one_spelling(cls, value: Any) -> Any:
        if isinstance(value, _DisagreeingAddresses):
            raise ValueError(
                f"metrics_listen_addr ({value.top!r}) and metrics.listen_addr ({value.section!r}) "
                "disagree: set one"
            )
        return value

    @field_validator("listen_addr")
    @classmethod
    def _listen_address(cls, value: str) -> str:
        if value:
            parse_listen_address(value)
        return value


class LoggingConfig(Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class Settings(Model):
    """The whole configuration file."""

    probe: ProbeConfig = Field(default_factory=ProbeConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    aggregator: AggregatorConfig = Field(default_factory=AggregatorConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    alerter: AlerterConfig = Field(default_factory=AlerterConfig)
    smtp: SmtpConfig | None = None
    ai: AiConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _top_level_metrics_address(cls, data: Any) -> Any:
        """``metrics_listen_addr:`` at the top (the spelling docs/metrics.md also gives) is
        ``metrics.listen_addr``; both at once must agree."""
        if not isinstance(data, dict) or "metrics_listen_addr" not in data:
            return data
        data = dict(data)
        address = data.pop("metrics_listen_addr")
        section = data.get("metrics")
        section = dict(section) if isinstance(section, dict) else {}
        if "listen_addr" in section and section["listen_addr"] != address:
            # reported at metrics.listen_addr, so the other problems of the file still show
            section["listen_addr"] = _DisagreeingAddresses(address, section["listen_addr"])
        else:
            section["listen_addr"] = address
        data["metrics"] = section
        return data

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

"""Every problem of a config in one pass: what ``config check`` prints and what ``run`` refuses.

A user fixing a file should see all of its problems at once, not one per run. Two things stood in
the way. pydantic reports every field error it can see, but a model's own validators run only
when its fields pass, and a sketch plugin's parameters can be checked only on a valid task; and
the checks that need the outside world (plugins, files, ports, directories) ran only on a file
whose model passed. So :func:`check` works in two stages:

1. **Model.** The file's mapping (with the environment laid over it by the loader) is validated;
   each invalid value is then removed, so its default stands in (a list item that cannot stand
   without it is dropped), and the rest validated again, until the model passes. The errors of
   every round are reported, at their place in the file.
2. **Semantics** (:func:`validate`) on the settings that parsed: group types, sketch plugins and
   their parameters, files that must exist, listen addresses that must be free, directories that
   must be writable, and, for ``run``, what the requested roles need. A check never reports on a
   value that stage 1 removed: the default standing in for it is not what the user wrote.

Checks have no side effects: nothing is created, a port is bound and released at once.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from netspectra.config.loader import config_source, read_config
from netspectra.config.models import (
    EMBEDDED_BUS,
    NatsAuth,
    Settings,
    WriterConfig,
    parse_listen_address,
)
from netspectra.config.problems import Location, Problem, format_path, model_problems
from netspectra.errors import ConfigError, PluginError

#: Roles in data order: stopped in this order, started in reverse (each after the next is ready).
#: Here, not in the composition root, so ``config check --roles`` parses them without asyncio.
ROLE_ORDER = ("probe", "engine", "api")
#: Every role; ``roles=None`` checks what any of them would need (``config check``).
ALL_ROLES = ROLE_ORDER


def parse_roles(text: str) -> tuple[str, ...]:
    """``"api,engine"`` → ``("engine", "api")``; unknown or empty names are a ConfigError."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in ROLE_ORDER]
    if unknown or not names:
        raise ConfigError(
            f"--roles: unknown role(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"choose from {', '.join(ROLE_ORDER)}"
        )
    return tuple(name for name in ROLE_ORDER if name in names)


_MAX_ROUNDS = 64


@dataclass
class _Removed:
    """What stage 1 removed, in the file's own coordinates (list indices as written)."""

    locations: list[Location] = field(default_factory=list)
    #: list location → the original index of each item still in the list (after drops)
    origins: dict[Location, list[int]] = field(default_factory=dict)

    def original(self, location: Location) -> Location:
        parts: list[str | int] = []
        for depth, part in enumerate(location):
            if isinstance(part, int):
                origin = self.origins.get(tuple(location[:depth]))
                if origin is not None and 0 <= part < len(origin):
                    part = origin[part]
            parts.append(part)
        return tuple(parts)

    def covers(self, location: Location) -> bool:
        """True when ``location`` (current coordinates) lies in something that was removed."""
        original = self.original(location)
        return any(original[: len(removed)] == removed for removed in self.locations)


@dataclass(frozen=True)
class CheckedConfig:
    """The outcome of :func:`check`: the settings when the file is valid, and every problem found."""

    source: str
    settings: Settings | None
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return self.settings is not None and not self.problems


def check(
    path: str | Path | None,
    roles: Iterable[str] | None = None,
    *,
    launching: bool | None = None,
    adjust: Callable[[Settings], Settings] | None = None,
    environ: dict[str, str] | None = None,
) -> CheckedConfig:
    """Load ``path`` and report every problem at once (``settings`` is None unless there are none).

    ``roles`` limits the checks to what those roles need (None: all of them, as ``config check``
    does); ``launching`` (default: when roles are given) adds what only a ``run`` with its final
    flags can tell (an interface or a capture to read, an embedded bus shared by probe and
    engine); ``adjust`` applies command-line overrides (``run --pcap``) before the checks.
    """
    source = config_source(path)
    try:
        raw = read_config(path, environ)
    except ConfigError as error:
        return CheckedConfig(source, None, (Problem(source, str(error).removeprefix(f"{source}: ")),))
    salvaged, problems, removed = _salvage(raw)
    if salvaged is None:
        return CheckedConfig(source, None, tuple(name_rules(problems, raw)))
    if adjust is not None:
        salvaged = adjust(salvaged)
    problems.extend(_semantic(salvaged, roles, removed, launching))
    problems.extend(_dropped_sketch_task_problems(raw, removed))
    if problems:
        return CheckedConfig(source, None, tuple(dict.fromkeys(name_rules(problems, raw))))
    return CheckedConfig(source, salvaged, ())


def validate(
    settings: Settings, roles: Iterable[str] | None = None, *, launching: bool | None = None
) -> list[Problem]:
    """Every problem valid ``settings`` meet when ``roles`` start (None: any role); see :func:`check`."""
    return _semantic(settings, roles, _Removed(), launching)


def warnings(settings: Settings, roles: Iterable[str] | None = None) -> list[Problem]:
    """What valid ``settings`` expose or will not do when ``roles`` start, which ``run`` only logs.

    Not problems: ``run`` goes on (the self-metrics are not the traffic), but a user checking a
    file should hear it before the process logs it. Today: ``metrics.listen_addr``, served by a
    process without the api role (the api serves ``/metrics`` itself, behind its token):
    an address beyond loopback, where the endpoint has no token and no TLS, and a port that
    cannot be bound now (the process would count without serving it).
    """
    wanted = frozenset(ALL_ROLES if roles is None else roles)
    address = settings.metrics.listen_addr
    if not address or not {"probe", "engine"} & wanted:
        return []
    location = format_path(("metrics", "listen_addr"))
    found: list[Problem] = []
    host, _ = parse_listen_address(address)
    if not _is_loopback(host):
        found.append(
            Problem(
                location,
                f"{address!r} listens beyond this host, and GET /metrics there has no token and no "
                "TLS: anyone who can reach the port reads this process's counters (task names, "
                "rates, losses); bind it to 127.0.0.1, or firewall it"
                + (
                    " (a process with the api role serves /metrics on the api's port instead)"
                    if "api" in wanted
                    else ""
                ),
            )
        )
    if "api" not in wanted:
        for _, message, _ in _bind_problems([(("metrics", "listen_addr"), address)]):
            found.append(Problem(location, f"{message}: the process will count without serving /metrics"))
    return found


def _is_loopback(host: str | None) -> bool:
    """A loopback address or ``localhost``; every interface (None) and other names are not."""
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name may resolve to anything


# --- stage 1: the model ------------------------------------------------------------------------


def _salvage(raw: dict[str, Any]) -> tuple[Settings | None, list[Problem], _Removed]:
    data = _copy(raw)
    removed = _Removed()
    problems: list[Problem] = []
    for _ in range(_MAX_ROUNDS):
        try:
            return Settings.model_validate(data), problems, removed
        except ValidationError as error:
            round_errors = error.errors(include_url=False)
            for problem, item in zip(model_problems(error), round_errors, strict=True):
                location = tuple(item["loc"])
                # a required value that was removed is missing now: not what the user wrote
                if not removed.covers(location):
                    problems.append(Problem(format_path(removed.original(location)), problem.message))
            if not _remove(data, [tuple(item["loc"]) for item in round_errors], removed):
                break
    return None, problems, removed


def _remove(data: dict[str, Any], locations: list[Location], removed: _Removed) -> bool:
    """Remove what each error points at; False when nothing could be removed (give up)."""
    keys: set[Location] = set()
    items: dict[Location, set[int]] = {}
    for location in locations:
        target = _target(data, location)
        if not target:
            continue
        if isinstance(target[-1], int):
            items.setdefault(target[:-1], set()).add(target[-1])
        else:
            keys.add(target)
    if not keys and not items:
        return False
    removed.locations.extend(removed.original(target) for target in keys)
    removed.locations.extend(
        removed.original((*parent, index)) for parent, indices in items.items() for index in indices
    )
    for target in keys:
        parent = _node(data, target[:-1])
        if isinstance(parent, dict):
            parent.pop(target[-1], None)
    for parent_location, indices in items.items():
        parent = _node(data, parent_location)
        if not isinstance(parent, list):
            continue
        origin = removed.origins.get(parent_location, list(range(len(parent))))
        removed.origins[parent_location] = [o for i, o in enumerate(origin) if i not in indices]
        for index in sorted(indices, reverse=True):
            del parent[index]
    return True


def _target(data: Any, location: Location) -> Location:
    """The part of the data an error is about: a mapping key, or a mapping inside a list.

    A location may reach past the data (a missing required key): then the mapping that lacks it
    goes. An item of a list of plain values (``key_fields: [SrcIp]``) takes the list with it.
    """
    node = data
    reached: list[str | int] = []
    for part in location:
        in_mapping = isinstance(node, dict) and isinstance(part, str) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_mapping or in_list):
            break
        node = node[part]
        reached.append(part)
    while reached and isinstance(reached[-1], int) and not isinstance(_node(data, tuple(reached)), dict):
        reached.pop()
    return tuple(reached)


def _node(data: Any, location: Location) -> Any:
    for part in location:
        data = data[part]
    return data


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


# --- stage 2: semantics ------------------------------------------------------------------------

#: One finding of a check: where, what, and the settings it also depends on (skipped if removed).
_Finding = tuple[Location, str, tuple[Location, ...]]


def _semantic(
    settings: Settings, roles: Iterable[str] | None, removed: _Removed, launching: bool | None
) -> list[Problem]:
    wanted = frozenset(ALL_ROLES if roles is None else roles)
    if launching is None:
        launching = roles is not None
    findings: list[_Finding] = []
    for checker in (_check_types, _check_sketch_tasks, _check_alert_rules):
        findings.extend(checker(settings))
    if "probe" in wanted:
        findings.extend(_check_probe(settings, launching=launching, roles=wanted))
    if "engine" in wanted:
        findings.extend(_check_engine(settings))
    if "api" in wanted:
        findings.extend(_check_api(settings, launching=launching))
    if {"probe", "engine"} & wanted:
        findings.extend(_check_nats_auth(settings, wanted))
    problems: list[Problem] = []
    for location, message, depends in findings:
        if removed.covers(location) or any(removed.covers(d) for d in depends):
            continue
        problems.append(Problem(format_path(removed.original(location)), message))
    return list(dict.fromkeys(problems))


def _check_types(settings: Settings) -> Iterator[_Finding]:
    for index, name in enumerate(settings.aggregator.types):
        message = _aggregator_type_problem(name)
        if message:
            yield ("aggregator", "types", index), message, ()


def _aggregator_type_problem(name: str) -> str | None:
    """Why ``name`` is no usable aggregator type (with "did you mean"), or None."""
    from netspectra.engine.groups import check_group_type

    try:
        check_group_type(name)
    except (ConfigError, PluginError) as error:
        return str(error).removeprefix("aggregator.types: ")
    return None


def _check_sketch_tasks(settings: Settings) -> Iterator[_Finding]:
    for index, task in enumerate(settings.aggregator.sketch.tasks):
        where: Location = ("aggregator", "sketch", "tasks", index)
        for location, message in _sketch_task_problems(task.algorithm, task.params, task.name):
            if not location:
                location = ("algorithm",) if "algorithm" in task.model_fields_set else ("skt_type",)
            yield (*where, *location), message, ()


def _sketch_task_problems(algorithm: str, params: dict[str, Any], task: str) -> list[tuple[Location, str]]:
    """Problems of one sketch task's plugin and parameters, at their place inside the task.

    The only call into the plugin registry, so a move of the registry changes this function alone.
    """
    from netspectra.engine.sketch.registry import check_params

    try:
        check_params(algorithm, params, task)
    except PluginError as error:
        cause = error.__cause__
        if not isinstance(cause, ValidationError):
            return [((), str(error))]
        unknown = f"unknown parameter of {algorithm} (`netspectra plugins list` shows its parameters)"
        return [
            (tuple(item["loc"]), problem.message)
            for item, problem in zip(cause.errors(), model_problems(cause, unknown=unknown), strict=True)
        ]
    return []


def _dropped_sketch_task_problems(raw: dict[str, Any], removed: _Removed) -> Iterator[Problem]:
    """Plugin problems of sketch tasks stage 1 dropped (a bad key field must not hide a bad width)."""
    from netspectra.config.models import GO_SKETCH_TYPES, SketchTaskConfig

    tasks_location: Location = ("aggregator", "sketch", "tasks")
    for location in removed.locations:
        if len(location) != 4 or location[:3] != tasks_location or not isinstance(location[3], int):
            continue
        try:
            task = raw["aggregator"]["sketch"]["tasks"][location[3]]
        except (KeyError, IndexError, TypeError):
            continue
        if not isinstance(task, dict):
            continue
        algorithm = task.get("algorithm") or GO_SKETCH_TYPES.get(task.get("skt_type"))  # type: ignore[arg-type]
        if not isinstance(algorithm, str):
            continue
        known = {name for name, spec in SketchTaskConfig.model_fields.items()} | {
            spec.alias for spec in SketchTaskConfig.model_fields.values() if spec.alias
        }
        params = {key: value for key, value in task.items() if key not in known}
        for inner, message in _sketch_task_problems(algorithm, params, str(task.get("name", ""))):
            yield Problem(format_path((*location, *(inner or ("algorithm",)))), message)


#: Sketch algorithms whose hitters are spreads (the others report packet counts and byte sizes).
_SPREAD_ALGORITHMS = frozenset({"super_spread", "spread_sketch"})
_COUNT_ALGORITHMS = frozenset({"count_min"})


def _check_alert_rules(settings: Settings) -> Iterator[_Finding]:
    """Each rule's task must exist, be counted, and have the rule's metric; channels must exist."""
    from difflib import get_close_matches

    from netspectra.config.models import FLOW_METRICS, GO_EXACT_METRICS

    alerter = settings.alerter
    aggregator = settings.aggregator
    exact = {task.name for task in aggregator.exact.tasks} if "exact" in aggregator.types else set()
    sketch = (
        {task.name: task.algorithm for task in aggregator.sketch.tasks}
        if "sketch" in aggregator.types
        else {}
    )
    channels = {channel.name for channel in alerter.channels}
    if settings.smtp is not None and settings.smtp.host:
        channels.add("email")
    for index, rule in enumerate(alerter.rules):
        where: Location = ("alerter", "rules", index)
        if rule.task_name in exact:
            if rule.metric not in (*GO_EXACT_METRICS, *FLOW_METRICS):
                yield (
                    (*where, "metric"),
                    f"{rule.metric} is a sketch metric; task {rule.task_name!r} is exact "
                    f"(use {', '.join((*GO_EXACT_METRICS, *FLOW_METRICS))})",
                    (),
                )
        elif rule.task_name in sketch:
            algorithm = sketch[rule.task_name]
            allowed: tuple[str, ...] = ("heavy_hitter_count", "heavy_hitter_size", "super_spreader_spread")
            if algorithm in _SPREAD_ALGORITHMS:
                allowed = ("super_spreader_spread",)
            elif algorithm in _COUNT_ALGORITHMS:
                allowed = ("heavy_hitter_count", "heavy_hitter_size")
            if rule.metric not in allowed:
                yield (
                    (*where, "metric"),
                    f"task {rule.task_name!r} ({algorithm}) has no {rule.metric}; use {', '.join(allowed)}",
                    (),
                )
        else:
            known = sorted(exact | set(sketch))
            close = get_close_matches(rule.task_name, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            yield (
                (*where, "task_name"),
                f"unknown task {rule.task_name!r}; {hint}counted tasks: {', '.join(known) or '(none)'}",
                (("aggregator",),),
            )
        for position, channel in enumerate(rule.channels):
            if channel not in channels:
                yield (
                    (*where, "channels", position),
                    f"no channel named {channel!r}; channels: {', '.join(sorted(channels)) or '(none)'}",
                    (),
                )
    for index, configured in enumerate(alerter.channels):
        if configured.type == "email" and (settings.smtp is None or not settings.smtp.host):
            yield ("alerter", "channels", index), "an email channel needs the smtp: section with a host", ()


def name_rules(problems: Iterable[Problem], raw: Any) -> list[Problem]:
    """Problems inside ``alerter.rules[i]`` also name the rule (``rule 'X': ...``), as a user looks it up."""
    from netspectra.config.problems import rule_label

    return [rule_label(problem, raw) for problem in problems]


def _check_probe(settings: Settings, *, launching: bool, roles: frozenset[str]) -> Iterator[_Finding]:
    probe = settings.probe
    if probe.persistence.enabled:
        message = _directory_problem(probe.persistence.path)
        if message:
            yield ("probe", "persistence", "path"), message, ()
    if probe.source == "file" and probe.pcap:
        message = _file_problem(probe.pcap, "capture file")
        if message:
            yield ("probe", "pcap"), message, ()
    if not launching:
        return  # what follows depends on the roles and flags of one `run`
    if probe.source == "file" and not probe.pcap:
        yield ("probe", "pcap"), "probe.source is 'file' but no capture is given: pass --pcap FILE", ()
    if probe.source not in ("file", "netflow", "sflow") and not probe.iface:
        yield (
            ("probe", "iface"),
            f"probe.source is {probe.source!r} but no interface is given: pass --iface IF "
            "(see `ip link`) or --pcap FILE to replay a capture",
            (),
        )
    if probe.nats_url == EMBEDDED_BUS and ("engine" not in roles or settings.bus_url != EMBEDDED_BUS):
        yield (
            ("probe", "nats_url"),
            "'embedded' is the in-process bus: it only reaches an engine in the same process. Run "
            "--roles=probe,engine together, or set a NATS server (e.g. nats://127.0.0.1:4222) to split them",
            (),
        )


def _check_engine(settings: Settings) -> Iterator[_Finding]:
    aggregator = settings.aggregator
    for group_name, group in (("exact", aggregator.exact), ("sketch", aggregator.sketch)):
        if group_name not in aggregator.types:
            continue  # the engine builds no writers for a group it does not run
        for index, writer in enumerate(group.writers):
            if writer.enabled:
                where: Location = ("aggregator", group_name, "writers", index)
                for location, message in _writer_problems(writer):
                    yield (*where, *location), message, ()


def _writer_problems(writer: WriterConfig) -> Iterator[tuple[Location, str]]:
    kind = writer.kind
    if kind in ("file", "text"):
        section = next((name for name in ("file", "gob", "text") if getattr(writer, name)), writer.type)
        message = _directory_problem(writer.path_options.root_path)
        if message:
            yield (section, "root_path"), message
    elif kind == "clickhouse":
        message = _directory_problem(writer.clickhouse_options.queue_dir)
        if message:
            yield ("clickhouse", "queue_dir"), f"the spool for snapshots the server cannot take: {message}"
    elif kind == "embedded":
        for message in _embedded_store_problems(writer.embedded_options.path):
            yield ("embedded", "path"), message


def _embedded_store_problems(path: str) -> Iterator[str]:
    message = _directory_problem(path)
    if message:
        yield message
        return
    store = Path(path)
    message = _directory_problem(str(store.parent / (store.name + ".spool")))
    if message:
        yield f"the store's spool: {message}"


def _check_api(settings: Settings, *, launching: bool) -> Iterator[_Finding]:
    api = settings.api
    yield from _bind_problems(
        [
            (("api", "grpc_listen_addr"), api.grpc_listen_addr),
            (("api", "http_listen_addr"), api.http_listen_addr),
        ]
    )
    missing = False
    for name in ("tls_cert", "tls_key"):
        file_name = getattr(api, name)
        message = _file_problem(file_name, "TLS file") if file_name else None
        if message:
            missing = True
            yield ("api", name), message, ()
    if api.tls_cert and api.tls_key and not missing:
        message = _tls_pair_problem(api.tls_cert, api.tls_key)
        if message:
            yield ("api", "tls_cert"), message, ()
    if settings.alerter.enabled:  # the alerter runs beside the api and keeps its state here
        message = _directory_problem(settings.alerter.state_dir)
        if message:
            yield ("alerter", "state_dir"), message, ()
    if settings.query_store() is None:
        if launching:  # a file for probe-only hosts has no store, and needs none
            yield (
                ("api", "store"),
                "no store to read: set api.store or enable a 'clickhouse' or 'embedded' writer",
                (("aggregator",),),
            )
        return
    if api.store is not None:
        if api.store.type == "embedded":
            path = (api.store.embedded or _default_embedded()).path
            for message in _embedded_store_problems(path):
                yield ("api", "store", "embedded", "path"), message, ()
        return
    for group_name in ("exact", "sketch"):
        for index, writer in enumerate(getattr(settings.aggregator, group_name).writers):
            if writer.enabled and writer.kind in ("clickhouse", "embedded"):
                if writer.kind == "embedded":  # the store the api reads by default
                    where: Location = ("aggregator", group_name, "writers", index, "embedded", "path")
                    for message in _embedded_store_problems(writer.embedded_options.path):
                        yield where, message, ()
                return


def _default_embedded() -> Any:
    from netspectra.config.models import EmbeddedStoreOptions

    return EmbeddedStoreOptions()


def _check_nats_auth(settings: Settings, roles: frozenset[str]) -> Iterator[_Finding]:
    """The credential and TLS files of each bus connection the roles open (none on the embedded bus)."""
    seen: set[Location] = set()
    if "probe" in roles and settings.probe.nats_url != EMBEDDED_BUS:
        seen.add(("probe", "auth"))
    if "engine" in roles and settings.bus_url != EMBEDDED_BUS:
        seen.add(("engine", "auth") if settings.engine.auth is not None else ("probe", "auth"))
    for where in sorted(seen, key=str):
        auth = settings.engine.auth if where[0] == "engine" else settings.probe.auth
        assert auth is not None
        for location, message in _nats_auth_problems(auth):
            yield (*where, *location), message, ()


def _nats_auth_problems(auth: NatsAuth) -> Iterator[tuple[Location, str]]:
    files = {
        "creds_file": "NATS credentials file",
        "nkeys_seed_file": "NATS nkeys seed file",
        "tls_ca": "CA file",
        "tls_cert": "TLS certificate",
        "tls_key": "TLS key",
    }
    missing = False
    for name, what in files.items():
        file_name = getattr(auth, name)
        message = _file_problem(file_name, what) if file_name else None
        if message:
            missing = True
            yield (name,), message
    if bool(auth.tls_cert) != bool(auth.tls_key):
        yield ("tls_key" if auth.tls_cert else "tls_cert",), "set both tls_cert and tls_key, or neither"
    elif auth.tls_cert and auth.tls_key and not missing:
        message = _tls_pair_problem(auth.tls_cert, auth.tls_key)
        if message:
            yield ("tls_cert",), message
    if auth.tls_ca and not missing:
        import ssl  # here: a config without TLS files is checked without it

        try:
            ssl.create_default_context(cafile=auth.tls_ca)
        except (OSError, ssl.SSLError) as error:
            yield ("tls_ca",), f"cannot load the CA file {auth.tls_ca!r}: {error}"


# --- the outside world -------------------------------------------------------------------------


def _file_problem(file_name: str, what: str) -> str | None:
    """Why ``file_name`` cannot be read as a file, or None."""
    path = Path(file_name)
    if not path.exists():
        return f"{what} {file_name!r} does not exist"
    if not path.is_file():
        return f"{what} {file_name!r} is not a file"
    if not os.access(path, os.R_OK):
        return f"{what} {file_name!r} is not readable by this user"
    return None


def _directory_problem(directory: str) -> str | None:
    """Why ``directory`` can neither be used nor created as a writable directory, or None."""
    path = Path(directory)
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        if existing == path:
            return f"{directory!r} exists and is not a directory"
        return f"cannot create {directory!r}: {str(existing)!r} is in the way (not a directory)"
    if not os.access(existing, os.W_OK | os.X_OK):
        if existing == path:
            return f"the directory {directory!r} is not writable by this user"
        return f"cannot create {directory!r}: {str(existing)!r} is not writable by this user"
    return None


def _tls_pair_problem(cert: str, key: str) -> str | None:
    import ssl  # here: a config without TLS files is checked without it

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        return f"cannot load the certificate {cert!r} with the key {key!r}: {error}"
    return None


def _bind_problems(addresses: list[tuple[Location, str]]) -> Iterator[_Finding]:
    """Bind each address as the server will (every address it resolves to), then release it.

    Sockets are held until all are bound, so two settings naming one port are caught too.
    """
    held: list[socket.socket] = []
    taken: dict[tuple[str | None, int], Location] = {}
    try:
        for location, address in addresses:
            host, port = parse_listen_address(address)
            if port and (host, port) in taken:
                yield location, f"{address!r}: the same port as {format_path(taken[(host, port)])}", ()
                continue
            taken[(host, port)] = location
            try:
                # an ASCII name as bytes: a str is IDNA-encoded, whose codec (with stringprep and
                # unicodedata) cost ~2 % of a `config check`; the resolver sees the same name
                name = host.encode() if host is not None and host.isascii() else host
                infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            except socket.gaierror as error:
                reason = f"{host!r} does not resolve ({error.strerror})"
                yield location, f"cannot listen on {address!r}: {reason}", ()
                continue
            for family, kind, protocol, _, sockaddr in dict.fromkeys(infos):
                sock = socket.socket(family, kind, protocol)
                held.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server does
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    sock.bind(sockaddr)
                except OSError as error:
                    yield location, f"cannot listen on {address!r}: {error.strerror or error}", ()
                    break
    finally:
        for sock in held:
            sock.close()

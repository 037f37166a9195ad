"""``netspectra query MODE``: the Go query script's modes and flags, as a gRPC client of the API.

Modes: aggregate, trace, heavyhitters, superspreaders (heavy hitters of type 2), tasks, health.
Flags as in Go's scripts/query/v2: --addr, --task, --key "SrcIP=1.2.3.4,DstPort=443", --type,
--limit, --end; plus a window (--since 15m, or --from T and --to T; --to is Go's --end), --json,
--token, --tls/--ca for a secured API. Errors print the gRPC status and message and exit 1 (2
for bad flags).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    import ssl

    from rich.console import Console


class Mode(StrEnum):
    AGGREGATE = "aggregate"
    TRACE = "trace"
    HEAVYHITTERS = "heavyhitters"
    SUPERSPREADERS = "superspreaders"
    TASKS = "tasks"
    HEALTH = "health"


def parse_keys(text: str) -> dict[str, str]:
    """``"SrcIP=1.2.3.4,DstPort=443"`` → {"SrcIP": "1.2.3.4", "DstPort": "443"} (the server validates)."""
    keys: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{part!r} is not NAME=VALUE", param_hint="--key")
        keys[name.strip()] = value.strip()
    return keys


def parse_time(text: str | None, flag: str = "--end") -> datetime | None:
    """RFC 3339 / ISO time (UTC if no zone) or epoch seconds; None = no bound."""
    if not text:
        return None
    if text.isdigit():
        return datetime.fromtimestamp(int(text), UTC)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an RFC 3339 time (2026-01-31T12:00:00Z) or epoch seconds", param_hint=flag
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_window(
    since: str | None, start: str | None, to: str | None, end: str | None, now: datetime
) -> tuple[datetime | None, datetime | None]:
    """(start, end) of the asked window from --since / --from / --to / --end; None = unbounded.

    ``--since D`` starts the window D before ``now``; ``--end`` is Go's name of ``--to``. Without
    a start the answer is Go's: everything counted since the period began.
    """
    from netspectra.config.durations import parse_duration

    if since and start:
        raise typer.BadParameter("give --since or --from, not both", param_hint="--since")
    if to and end:
        raise typer.BadParameter("--to and --end are the same bound; give one", param_hint="--to")
    upper = parse_time(to, "--to") if to else parse_time(end, "--end")
    lower = parse_time(start, "--from")
    if since:
        try:
            seconds = parse_duration(since)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--since") from None
        if seconds < 1:
            raise typer.BadParameter(f"{since!r} is under one second; e.g. 15m, 2h", param_hint="--since")
        lower = now - timedelta(seconds=seconds)
    if lower is not None and upper is not None and lower > upper:
        hint = "--since" if since else "--from"
        raise typer.BadParameter(
            f"the window starts ({lower.isoformat()}) after it ends ({upper.isoformat()})", param_hint=hint
        )
    return lower, upper


def _split_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise typer.BadParameter(f"{addr!r} is not HOST:PORT", param_hint="--addr")
    return host.strip("[]") or "127.0.0.1", int(port)


async def _call(
    mode: Mode,
    addr: str,
    task: str,
    key: str,
    kind: int,
    limit: int,
    window: tuple[datetime | None, datetime | None],
    token: str | None,
    tls: ssl.SSLContext | None,
) -> Any:
    from grpclib.client import Channel

    from netspectra.wire.generated import v1

    start, end = window
    host, port = _split_addr(addr)
    metadata = {"authorization": f"Bearer {token}"} if token else None
    channel = Channel(host, port, ssl=tls)
    try:
        stub = v1.QueryServiceStub(channel, metadata=metadata, timeout=30)
        if mode is Mode.HEALTH:
            return await stub.health_check(v1.HealthCheckRequest())
        if mode is Mode.TASKS:
            return await stub.search_tasks(v1.SearchTasksRequest())
        if mode is Mode.AGGREGATE:
            return await stub.aggregate_flows(
                v1.AggregationRequest(task_name=task, end_time=end, start_time=start)
            )
        if mode is Mode.TRACE:
            return await stub.trace_flow(
                v1.TraceFlowRequest(task_name=task, flow_keys=parse_keys(key), end_time=end, start_time=start)
            )
        hitter_type = 2 if mode is Mode.SUPERSPREADERS else kind
        return await stub.query_heavy_hitters(
            v1.HeavyHittersRequest(
                task_name=task, type=hitter_type, limit=limit, end_time=end, start_time=start
            )
        )
    finally:
        channel.close()


#: Shown only when an answer was sampled (raw differs from the renormalised counts): flow-export
#: input; a capture-only deployment's tables look as they always did.
_RAW_HEADERS = ("raw packets", "raw bytes", "rate")


def _sampled(answer: Any) -> bool:
    raw = answer.raw
    return raw is not None and (raw.packets, raw.bytes) != (answer.total_packets, answer.total_bytes)


def _raw_cells(answer: Any, sampled: bool) -> tuple[str, ...]:
    """Raw packets, raw bytes and the effective sampling rate (renormalised / raw packets) when
    the table shows them (``sampled``); "-" for an answer without raw counts."""
    raw = answer.raw
    if not sampled:
        return ()
    if raw is None:
        return "-", "-", "-"
    rate = f"{answer.total_packets / raw.packets:,.6g}" if raw.packets else "-"
    return f"{raw.packets:,}", f"{raw.bytes:,}", rate


def _render(mode: Mode, response: Any, console: Console) -> None:
    from rich.table import Table

    if mode is Mode.HEALTH:
        console.print(f"status: {response.status}")
    elif mode is Mode.TASKS:
        table = Table("task", "kind")
        kinds = list(response.task_kinds) + [""] * len(response.task_names)
        for name, kind in zip(response.task_names, kinds, strict=False):
            table.add_row(name, kind)
        console.print(table)
    elif mode is Mode.AGGREGATE:
        sampled = any(_sampled(s) for s in response.summaries)
        table = Table("task", "flows", "packets", "bytes", *_RAW_HEADERS * sampled)
        for s in response.summaries:
            counts = (f"{s.flow_count:,}", f"{s.total_packets:,}", f"{s.total_bytes:,}")
            table.add_row(s.task_name, *counts, *_raw_cells(s, sampled))
        console.print(table)
    elif mode is Mode.TRACE:
        life = response.lifecycle
        sampled = _sampled(life)
        table = Table("first seen", "last seen", "packets", "bytes", *_RAW_HEADERS * sampled)
        table.add_row(
            str(life.first_seen),
            str(life.last_seen),
            f"{life.total_packets:,}",
            f"{life.total_bytes:,}",
            *_raw_cells(life, sampled),
        )
        console.print(table)
    else:
        table = Table("#", "flow", "value")
        for rank, hitter in enumerate(response.hitters, 1):
            table.add_row(str(rank), hitter.flow, f"{hitter.value:,}")
        console.print(table)


def query(
    mode: Mode = typer.Argument(
        ..., help="aggregate | trace | heavyhitters | superspreaders | tasks | health"
    ),
    addr: str = typer.Option("localhost:50051", "--addr", help="API address HOST:PORT."),
    task: str = typer.Option("", "--task", help="Task name (aggregate: empty = every task)."),
    key: str = typer.Option("", "--key", help='Flow for trace, e.g. "SrcIP=1.2.3.4,DstPort=443".'),
    kind: int = typer.Option(0, "--type", help="Heavy-hitter type: 0 count, 1 bytes, 2 spread."),
    limit: int = typer.Option(10, "--limit", help="Heavy hitters to return (max 10000)."),
    end: str | None = typer.Option(None, "--end", help="Only data up to this time (RFC 3339 or epoch s)."),
    since: str | None = typer.Option(
        None, "--since", help="Window: the last DURATION (15m, 2h, 1h30m) up to now or --to."
    ),
    start: str | None = typer.Option(
        None, "--from", help="Window start (RFC 3339 or epoch s); unset = since the period began."
    ),
    to: str | None = typer.Option(None, "--to", help="Window end, as --end (RFC 3339 or epoch s)."),
    as_json: bool = typer.Option(False, "--json", help="Print the response as JSON."),
    token: str | None = typer.Option(None, "--token", envvar="NETSPECTRA_API_TOKEN", help="Bearer token."),
    use_tls: bool = typer.Option(False, "--tls", help="Connect with TLS."),
    ca: str | None = typer.Option(None, "--ca", help="CA certificate for --tls (default: system CAs)."),
) -> None:
    """Query a running NetSpectra API (the Go query script's modes and flags)."""
    import asyncio
    import json
    import ssl

    import betterproto2
    from grpclib import GRPCError
    from rich.console import Console

    if mode in (Mode.TRACE, Mode.HEAVYHITTERS, Mode.SUPERSPREADERS) and not task:
        raise typer.BadParameter(f"{mode.value} needs --task", param_hint="--task")
    if mode is Mode.TRACE and not key:
        raise typer.BadParameter('trace needs --key, e.g. "SrcIP=1.2.3.4"', param_hint="--key")
    tls: ssl.SSLContext | None = None
    if use_tls or ca:
        tls = ssl.create_default_context(cafile=ca)
        tls.set_alpn_protocols(["h2"])
    window = parse_window(since, start, to, end, datetime.now(UTC))
    console = Console()
    try:
        response = asyncio.run(_call(mode, addr, task, key, kind, limit, window, token, tls))
    except GRPCError as error:
        Console(stderr=True).print(f"[red]{error.status.name}[/red]: {error.message}")
        raise typer.Exit(1) from None
    except OSError as error:
        Console(stderr=True).print(f"[red]cannot reach the API at {addr}[/red]: {error}")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(
            json.dumps(
                response.to_dict(casing=betterproto2.Casing.SNAKE, include_default_values=True),
                indent=2,
                default=str,
            )
        )
    else:
        _render(mode, response, console)


def register(app: typer.Typer) -> None:
    """Add ``query`` to the root app."""
    app.command("query")(query)

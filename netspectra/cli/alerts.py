"""``netspectra alerts [active|firing|history|all]``: the alerter's alerts through the ListAlerts RPC.

A gRPC client of the api (the api lists the alerter of its own process, or the state file of one
on its host); the flags match ``netspectra query`` (--addr, --token, --tls/--ca, --json).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    import ssl


class State(StrEnum):
    ACTIVE = "active"
    FIRING = "firing"
    HISTORY = "history"
    ALL = "all"


async def _list(
    addr: str, state: str, rule: str, limit: int, token: str | None, tls: ssl.SSLContext | None
) -> Any:
    from grpclib.client import Channel

    from netspectra.wire.generated import v1

    host, sep, port_text = addr.rpartition(":")
    if not sep or not port_text.isdigit():
        raise typer.BadParameter(f"{addr!r} is not HOST:PORT", param_hint="--addr")
    host, port = host.strip("[]") or "127.0.0.1", int(port_text)
    metadata = {"authorization": f"Bearer {token}"} if token else None
    channel = Channel(host, port, ssl=tls)
    try:
        stub = v1.QueryServiceStub(channel, metadata=metadata, timeout=30)
        return await stub.list_alerts(v1.ListAlertsRequest(state=state, rule=rule, limit=limit))
    finally:
        channel.close()


def _when(stamp: datetime | None) -> str:
    if stamp is None or stamp.timestamp() <= 0:
        return ""
    return stamp.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def alerts(
    state: State = typer.Argument(State.ACTIVE, help="active (pending and firing) | firing | history | all"),
    rule: str = typer.Option("", "--rule", help="Only this rule's alerts."),
    limit: int = typer.Option(100, "--limit", help="At most this many (max 10000)."),
    addr: str = typer.Option("localhost:50051", "--addr", help="API address HOST:PORT."),
    as_json: bool = typer.Option(False, "--json", help="Print the response as JSON."),
    token: str | None = typer.Option(None, "--token", envvar="NETSPECTRA_API_TOKEN", help="Bearer token."),
    use_tls: bool = typer.Option(False, "--tls", help="Connect with TLS."),
    ca: str | None = typer.Option(None, "--ca", help="CA certificate for --tls (default: system CAs)."),
) -> None:
    """List the alerts of a running NetSpectra (firing first, then pending; history newest first)."""
    import asyncio
    import json
    import ssl

    import betterproto2
    from grpclib import GRPCError
    from rich.console import Console
    from rich.table import Table

    tls: ssl.SSLContext | None = None
    if use_tls or ca:
        tls = ssl.create_default_context(cafile=ca)
        tls.set_alpn_protocols(["h2"])
    try:
        response = asyncio.run(_list(addr, state.value, rule, limit, token, tls))
    except GRPCError as error:
        Console(stderr=True).print(f"[red]{error.status.name}[/red]: {error.message}")
        raise typer.Exit(1) from None
    except OSError as error:
        Console(stderr=True).print(f"[red]cannot reach the API at {addr}[/red]: {error}")
        raise typer.Exit(1) from None
    if as_json:
        payload = response.to_dict(casing=betterproto2.Casing.SNAKE, include_default_values=True)
        typer.echo(json.dumps(payload, indent=2, default=str))
        return
    table = Table("status", "rule", "severity", "task", "flow", "value", "condition", "fired", "resolved")
    for alert in response.alerts:
        table.add_row(
            alert.status,
            alert.rule,
            alert.severity,
            alert.task_name,
            alert.key,
            f"{alert.value:g}",
            alert.condition,
            _when(alert.fired_at) or f"pending since {_when(alert.pending_since)}",
            _when(alert.resolved_at),
        )
    Console().print(table)
    if not response.alerts:
        typer.echo(f"no {state.value} alerts")


def register(app: typer.Typer) -> None:
    app.command("alerts")(alerts)

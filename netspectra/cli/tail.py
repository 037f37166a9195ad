"""``netspectra tail``: print decoded packets from the bus subject (Go's ``--mode=sub``), for debugging."""

from __future__ import annotations

from pathlib import Path

import typer

from netspectra.cli.common import load_or_exit


def tail(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config (default: built-in)."),
    url: str | None = typer.Option(None, "--url", help="NATS URL (default: the engine's effective one)."),
    subject: str | None = typer.Option(None, "--subject", help="Subject (default: probe.subject)."),
    count: int = typer.Option(0, "--count", "-n", help="Stop after this many packets (0 = until Ctrl-C)."),
) -> None:
    """Subscribe (outside any queue group) and print each packet as one line."""
    settings = load_or_exit(config)
    bus_url = url or settings.bus_url
    if bus_url == "embedded":
        typer.echo("error: tail needs a NATS server: pass --url nats://HOST:4222", err=True)
        raise typer.Exit(2)
    # a BusError (no server there) becomes the root command's one line, exit 1
    import asyncio
    import contextlib

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_tail(bus_url, subject or settings.bus_subject, count, settings.engine_auth))


async def _tail(url: str, subject: str, count: int, auth: object) -> None:
    import asyncio

    from netspectra.bus.nats import NatsBus
    from netspectra.model.fields import address_text
    from netspectra.wire.codec import decode_packet_batch, decode_packet_infos
    from netspectra.wire.subjects import batch_subject, is_batch_subject

    bus = NatsBus(url, auth)  # type: ignore[arg-type]
    done = asyncio.Event()
    printed = 0

    def show(message: object) -> None:
        nonlocal printed
        data = message.data  # type: ignore[attr-defined]
        is_batch = is_batch_subject(message.subject)  # type: ignore[attr-defined]
        result = decode_packet_batch(data) if is_batch else decode_packet_infos([data])
        if result.rejected:
            typer.echo(f"malformed message ({len(data)} bytes): {result.rejects}")
        columns = result.columns
        for i in range(len(columns)):
            if count and printed >= count:
                done.set()
                return
            typer.echo(
                f"{int(columns.ts_ns[i])} {address_text(columns.src_ip[i])}:{int(columns.src_port[i])} -> "
                f"{address_text(columns.dst_ip[i])}:{int(columns.dst_port[i])} "
                f"proto {int(columns.protocol[i])} len {int(columns.length[i])}"
            )
            printed += 1
        if count and printed >= count:
            done.set()

    await bus.subscribe(subject, show)
    await bus.subscribe(batch_subject(subject), show)
    try:
        await done.wait()
    finally:
        await bus.close()


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("tail")(tail)

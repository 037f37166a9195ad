"""``netspectra run``: host any subset of the probe, engine and api roles in one process."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from netspectra.cli.common import EXIT_BAD_CONFIG, check_or_exit

if TYPE_CHECKING:
    from netspectra.config import Settings


def run(
    roles: str = typer.Option("probe,engine,api", "--roles", help="Comma-separated: probe, engine, api."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config (default: built-in)."),
    iface: str | None = typer.Option(None, "--iface", "-i", help="Capture live on this interface."),
    pcap: Path | None = typer.Option(None, "--pcap", help="Replay this capture file through the probe."),
    rate: float | None = typer.Option(None, "--rate", help="Replay at this many packets per second."),
    speed: float | None = typer.Option(None, "--speed", help="Replay at this multiple of capture time."),
    grace: float = typer.Option(30.0, "--grace", help="Seconds each role gets to stop before cancel."),
) -> None:
    """Run roles as supervised tasks until SIGINT/SIGTERM (a second signal forces exit).

    The config is checked first, as `config check` does but only for the roles asked for; any
    problem ends the command with exit 2 before a role starts.
    """
    import asyncio

    from netspectra.app import Application, parse_roles, serve_forever
    from netspectra.errors import ConfigError
    from netspectra.logs import configure_logging

    if iface and pcap:
        raise typer.BadParameter("give either --iface or --pcap, not both", param_hint="--iface/--pcap")
    if (rate or speed) and not pcap:
        raise typer.BadParameter(
            "--rate and --speed only apply to --pcap replay", param_hint="--rate/--speed"
        )
    if rate and speed:
        raise typer.BadParameter("give either --rate or --speed, not both", param_hint="--rate/--speed")
    try:
        role_names = parse_roles(roles)
    except ConfigError as error:
        raise typer.BadParameter(str(error).removeprefix("--roles: "), param_hint="--roles") from None
    if pcap and not pcap.is_file():
        raise typer.BadParameter(f"{pcap} does not exist or is not a file", param_hint="--pcap")

    def apply_flags(settings: Settings) -> Settings:
        probe_update: dict[str, Any] = {}
        if iface:
            probe_update["iface"] = iface
            if settings.probe.source == "file":
                probe_update["source"] = "afpacket"
        if pcap:
            probe_update.update(source="file", pcap=str(pcap), rate=rate, speed=speed)
        if not probe_update:
            return settings
        return settings.model_copy(update={"probe": settings.probe.model_copy(update=probe_update)})

    settings = check_or_exit(config, role_names, adjust=apply_flags)
    configure_logging(settings.logging)
    try:
        application = Application(settings, role_names, grace_s=grace)
        code = asyncio.run(serve_forever(application))
    except ConfigError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(EXIT_BAD_CONFIG) from None
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("run")(run)

"""``netspectra config check FILE``: every problem of a config in one pass, as ``run`` would meet them."""

from __future__ import annotations

from pathlib import Path

import typer

from netspectra.cli.common import check_or_exit

config_app = typer.Typer(
    help="Inspect and validate configuration files.", no_args_is_help=True, rich_markup_mode=None
)  # plain help, as the root app (cli/main.py)


@config_app.command("check")
def check(
    path: Path = typer.Argument(..., help="The YAML config file to validate."),
    roles: str = typer.Option(
        "probe,engine,api", "--roles", help="Check what these roles need (as `run --roles` would start)."
    ),
) -> None:
    """Exit 0 when FILE is valid; otherwise print every problem (field path: reason) and exit 2.

    Checks the model, group types, sketch plugins and parameters, files that must exist, listen
    addresses (bound and released), and directories that must be writable. Warnings (printed, exit
    still 0): what `run` would only log, such as a metrics.listen_addr beyond loopback.
    """
    from netspectra.config.models import redact_url
    from netspectra.config.validate import parse_roles, warnings
    from netspectra.errors import ConfigError

    try:
        role_names = parse_roles(roles)
    except ConfigError as error:
        raise typer.BadParameter(str(error).removeprefix("--roles: "), param_hint="--roles") from None
    # `config check` has no --pcap/--iface: what those flags supply is checked by `run` alone
    settings = check_or_exit(path, role_names, launching=False)
    for warning in warnings(settings, role_names):
        typer.echo(f"warning: {warning}", err=True)
    aggregator = settings.aggregator
    typer.echo(
        f"{path}: OK ({len(aggregator.exact.tasks)} exact, {len(aggregator.sketch.tasks)} sketch tasks; "
        f"bus {redact_url(settings.bus_url)}, subject {settings.bus_subject})"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")

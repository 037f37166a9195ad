"""``netspectra config check FILE``: validate a config and name every bad field."""

from __future__ import annotations

from pathlib import Path

import typer

from netspectra.config import load_settings
from netspectra.errors import ConfigError

config_app = typer.Typer(help="Inspect and validate configuration files.", no_args_is_help=True)


@config_app.command("check")
def check(path: Path = typer.Argument(..., help="The YAML config file to validate.")) -> None:
    """Exit 0 when FILE is valid; otherwise print each invalid field with the reason and exit 2."""
    try:
        settings = load_settings(path)
    except ConfigError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    aggregator = settings.aggregator
    typer.echo(
        f"{path}: OK ({len(aggregator.exact.tasks)} exact, {len(aggregator.sketch.tasks)} sketch tasks; "
        f"bus {settings.bus_url}, subject {settings.bus_subject})"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")

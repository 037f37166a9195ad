"""What every command does first: load and validate the config, set up logging."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import typer

from netspectra.config import Settings, load_settings
from netspectra.errors import ConfigError
from netspectra.logs import configure_logging


def default_config_path() -> Path:
    """The packaged default config (the same file as the repository's ``config.yaml``)."""
    return Path(str(resources.files("netspectra").joinpath("default_config.yaml")))


def load_or_exit(path: Path | None, *, configure_logs: bool = True) -> Settings:
    """Validated settings of ``path`` (the packaged default when None), or exit 2 naming each bad field."""
    try:
        settings = load_settings(path if path is not None else default_config_path())
    except ConfigError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    if configure_logs:
        configure_logging(settings.logging)
    return settings

"""``netspectra``: the root typer app; each sub-module registers its own commands."""

from __future__ import annotations

import typer

from netspectra import __version__
from netspectra.cli import analyze, config_cmd, generate, plugins, query, run, tail

app = typer.Typer(
    name="netspectra",
    help="Network traffic monitoring and analysis: who talks to whom, how much, heavy hitters, spreaders.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"netspectra {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """NetSpectra: capture → bus → engine → storage → api."""


for module in (run, analyze, generate, query, tail, plugins, config_cmd):
    module.register(app)

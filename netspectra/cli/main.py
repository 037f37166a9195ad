"""``netspectra``: the root typer app; each sub-module registers its own commands.

A fault NetSpectra names (any :class:`~netspectra.errors.NetSpectraError`, or an OS error such as
a missing file) reaching the command line is printed as one line and ends the command with a
non-zero code (2 for a configuration error, 1 otherwise); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import logging
from typing import Any

import typer
from typer.core import TyperGroup

from netspectra import __version__
from netspectra.cli import alerts, analyze, config_cmd, generate, plugins, query, run, tail, warmup
from netspectra.cli.common import EXIT_BAD_CONFIG, CliOptions, pause_garbage_collection
from netspectra.errors import ConfigError, NetSpectraError


class _OneLineErrors(TyperGroup):
    """The root group: turns a fault that escaped a command into one line and an exit code."""

    def invoke(self, ctx: Any) -> Any:  # typer's click Context (vendored by typer >= 0.16)
        try:
            return super().invoke(ctx)
        except (NetSpectraError, OSError) as error:
            options = ctx.obj if isinstance(ctx.obj, CliOptions) else CliOptions()
            if options.debug:
                raise
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(EXIT_BAD_CONFIG if isinstance(error, ConfigError) else 1) from None


app = typer.Typer(
    name="netspectra",
    cls=_OneLineErrors,
    help="Network traffic monitoring and analysis: who talks to whom, how much, heavy hitters, spreaders.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help and usage errors: typer's rich formatter imports rich's markdown, syntax and
    # traceback modules, which doubled the CPU time of `netspectra --help` (0.25 s vs 0.12 s here).
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"netspectra {__version__}")
        raise typer.Exit()


#: Commands that start, do one piece of work and exit: their start-up (numba, pydantic, chdb)
#: builds a few hundred thousand objects and no garbage worth a collection (see
#: :func:`~netspectra.cli.common.pause_garbage_collection`). ``run`` and ``tail`` serve until
#: stopped, ``warmup`` compiles (numba's compiler leaves cycles), ``generate`` may write millions of
#: packets: they collect as usual.
_SHORT_COMMANDS = frozenset({"analyze", "config", "plugins", "query", "alerts"})


@app.callback()
def main(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(
        False, "--debug", help="Log at DEBUG and show the traceback of an error instead of one line."
    ),
) -> None:
    """NetSpectra: capture → bus → engine → storage → api."""
    ctx.obj = CliOptions(debug=debug)
    if ctx.invoked_subcommand in _SHORT_COMMANDS:
        pause_garbage_collection(ctx)
    if debug:
        # NetSpectra's own loggers, whatever level the config later gives the root logger
        logging.getLogger("netspectra").setLevel(logging.DEBUG)


for module in (run, analyze, generate, query, alerts, tail, plugins, config_cmd, warmup):
    module.register(app)

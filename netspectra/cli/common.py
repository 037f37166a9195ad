"""What every command does first: load and validate the config, set up logging.

Every ``netspectra`` command imports this module and the command modules to build its help, so
they import only typer and the standard library at module level; what a command needs (the
config models, numba kernels, the store, gRPC) is imported inside the command that runs
(``tests/unit/spine/test_startup.py`` holds that line).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from netspectra.config import Settings

#: Exit code of a command refused for its configuration (``config check``, ``run``, ...).
EXIT_BAD_CONFIG = 2


@dataclass(frozen=True)
class CliOptions:
    """The root command's options, kept on the click context for every subcommand."""

    debug: bool = False  #: show tracebacks and DEBUG lines of NetSpectra's loggers


def pause_garbage_collection(ctx: typer.Context) -> None:
    """No cyclic garbage collection until the command's context closes.

    Importing numba, numpy, pydantic and chdb creates objects by the hundred thousand, and each
    full collection during start-up walks all of them again: ~8 % of the CPU time of a
    ``config check`` or of a 1 000-frame ``analyze`` here (0.33 -> 0.31 s, 1.41 -> 1.29 s). The
    work after start-up frees its objects by reference count (numpy arrays, batches), so a
    500 000-frame analyze peaked at the same RSS (267 MB) either way. The collector is enabled
    again when the command ends (commands run in-process by tests leave it as they found it).
    """
    if gc.isenabled():
        gc.disable()
        ctx.call_on_close(_resume_garbage_collection)


def _resume_garbage_collection() -> None:
    """Enable the collector again, the objects built meanwhile frozen first (see :func:`gc.freeze`).

    Every object allocated while the collector was paused is in its youngest generation, so the
    first allocation after ``gc.enable()`` walked all of them: ~25 ms at the end of a 1 000-frame
    ``analyze``, spent just before the process exits. Frozen, they are never walked again (the
    few that become garbage later are not collected; a short command is about to exit).
    """
    gc.freeze()
    gc.enable()


def default_config_path() -> Path:
    """The packaged default config (the same file as the repository's ``config.yaml``)."""
    return Path(str(resources.files("netspectra").joinpath("default_config.yaml")))


def load_or_exit(path: Path | None, *, configure_logs: bool = True) -> Settings:
    """Validated settings of ``path`` (the packaged default when None), or exit 2 naming each bad field."""
    from netspectra.config import load_settings
    from netspectra.errors import ConfigError
    from netspectra.logs import configure_logging

    try:
        settings = load_settings(path if path is not None else default_config_path())
    except ConfigError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(EXIT_BAD_CONFIG) from None
    if configure_logs:
        configure_logging(settings.logging)
    return settings


def check_or_exit(
    path: Path | None,
    roles: Iterable[str] | None = None,
    *,
    launching: bool | None = None,
    adjust: Callable[[Settings], Settings] | None = None,
) -> Settings:
    """Settings without a problem for ``roles``, else exit 2 printing every problem (as ``config check``)."""
    from netspectra.config.problems import format_problems
    from netspectra.config.validate import check

    config_path = path if path is not None else default_config_path()
    checked = check(config_path, roles, launching=launching, adjust=adjust)
    if checked.settings is None or checked.problems:
        typer.echo(format_problems(checked.source, checked.problems), err=True)
        raise typer.Exit(EXIT_BAD_CONFIG)
    return checked.settings

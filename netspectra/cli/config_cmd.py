"""``netspectra config check FILE``: validate a config and name every bad field."""

from __future__ import annotations

from pathlib import Path

import typer

from netspectra.config import Settings, load_settings
from netspectra.errors import ConfigError, PluginError

config_app = typer.Typer(help="Inspect and validate configuration files.", no_args_is_help=True)


def sketch_task_problems(settings: Settings) -> list[str]:
    """Every sketch task whose plugin cannot be loaded or whose parameters it rejects.

    The engine only disables such a task (the others keep running), so a check must resolve the
    plugins itself to catch a misspelled algorithm or parameter before deployment.
    """
    from netspectra.engine.sketch.registry import discover, load_algorithm, validate_params

    points = discover()
    problems = []
    for index, task in enumerate(settings.aggregator.sketch.tasks):
        where = f"aggregator.sketch.tasks.{index} ({task.name})"
        try:
            validate_params(load_algorithm(task.algorithm, points), task.params, task.name)
        except PluginError as error:
            problems.append(f"  {where}: {error}")
    return problems


@config_app.command("check")
def check(path: Path = typer.Argument(..., help="The YAML config file to validate.")) -> None:
    """Exit 0 when FILE is valid; otherwise print each invalid field with the reason and exit 2."""
    try:
        settings = load_settings(path)
    except ConfigError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    problems = sketch_task_problems(settings)
    if problems:
        typer.echo(f"{path}: {len(problems)} invalid sketch task(s)\n" + "\n".join(problems), err=True)
        raise typer.Exit(2)
    from netspectra.bus.nats import redact_url

    aggregator = settings.aggregator
    typer.echo(
        f"{path}: OK ({len(aggregator.exact.tasks)} exact, {len(aggregator.sketch.tasks)} sketch tasks; "
        f"bus {redact_url(settings.bus_url)}, subject {settings.bus_subject})"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")

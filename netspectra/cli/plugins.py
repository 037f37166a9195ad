"""CLI: ``netspectra plugins list`` — every sketch algorithm found through entry points."""

from __future__ import annotations

import typer

plugins_app = typer.Typer(
    help="Sketch algorithm plugins (entry-point group netspectra.sketches).", rich_markup_mode=None
)  # plain help, as the root app (cli/main.py)


@plugins_app.command("list")
def list_plugins() -> None:
    """Show each discovered algorithm: package, version, parameters with defaults, or why it failed."""
    from rich.console import Console
    from rich.table import Table

    from netspectra.engine.sketch.registry import ENTRY_POINT_GROUP, describe_all

    infos = describe_all()
    console = Console()
    table = Table(title=f"Sketch algorithms ({ENTRY_POINT_GROUP})", show_lines=True)
    table.add_column("name", style="bold")
    table.add_column("package")
    table.add_column("version")
    table.add_column("parameters (defaults)", overflow="fold", min_width=26)
    table.add_column("status")
    for info in infos:
        if info.error is not None:
            table.add_row(info.name, info.distribution, info.version, "", f"[red]FAILED[/red]: {info.error}")
            continue
        params = "\n".join(f"{param.name}={param.default!r}" for param in info.params)
        status = "ok, " + ("mergeable" if info.mergeable else "not mergeable (one engine, no windows)")
        if info.summary:
            status += f"\n{info.summary}"
        table.add_row(info.name, info.distribution, info.version, params, status)
    console.print(table)
    if not infos:
        console.print(f"No plugin registers under {ENTRY_POINT_GROUP!r}; is netspectra installed?")


def register(app: typer.Typer) -> None:
    """Add ``netspectra plugins ...`` to the root app."""
    app.add_typer(plugins_app, name="plugins")

"""``netspectra warmup``: compile every kernel into numba's on-disk cache (``scripts/dev`` runs it)."""

from __future__ import annotations

import typer


def warmup() -> None:
    """Compile (or load) every kernel once, so the first real run after an install compiles nothing."""
    from netspectra.warmup import main

    raise typer.Exit(main())


def register(app: typer.Typer) -> None:
    """Add ``warmup`` to the root app."""
    app.command("warmup")(warmup)

"""``python -m netspectra`` runs the CLI."""

from netspectra.cli.main import app

app()

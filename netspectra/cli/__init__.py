"""The thin typer CLI: parse, load config, configure logging, hand over to the composition root."""

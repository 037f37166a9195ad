"""Configuration: models, Go duration strings, and the loader that validates a file once."""

from netspectra.config.loader import load_settings
from netspectra.config.models import Settings

__all__ = ["Settings", "load_settings"]

"""Aggregator groups chosen by name: ``aggregator.types`` → entry point ``netspectra.aggregators``.

The built-ins (``exact``, ``sketch``) register through the same entry-point group as any
third-party package, so there is one way in. Each group class offers
``from_config(settings) -> group`` and implements :class:`~netspectra.engine.protocols.AggregatorGroup`.
"""

from __future__ import annotations

import difflib
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from netspectra.config.models import Settings
from netspectra.engine.protocols import AggregatorGroup
from netspectra.errors import ConfigError, PluginError

ENTRY_POINT_GROUP = "netspectra.aggregators"


def available_groups() -> dict[str, EntryPoint]:
    """Every registered aggregator type, by name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _unknown(name: str, known: list[str]) -> ConfigError:
    hint = ""
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        hint = f"; did you mean {close[0]!r}?"
    listed = ", ".join(sorted(known)) or "(none registered; is netspectra installed?)"
    return ConfigError(f"aggregator.types: unknown aggregator type {name!r}{hint} available: {listed}")


def load_group_class(name: str) -> Any:
    """The class registered under ``name``; ConfigError when unknown, PluginError when it fails to load."""
    registered = available_groups()
    entry = registered.get(name)
    if entry is None:
        raise _unknown(name, list(registered))
    try:
        group_class = entry.load()
    except Exception as error:
        dist = entry.dist.name if entry.dist is not None else "unknown distribution"
        raise PluginError(
            f"aggregator type {name!r} ({entry.value}, from {dist}) failed to import: {error}"
        ) from error
    if not callable(getattr(group_class, "from_config", None)):
        raise PluginError(f"aggregator type {name!r} ({entry.value}) has no from_config(settings) method")
    return group_class


def build_groups(settings: Settings) -> dict[str, AggregatorGroup]:
    """Type name → group, one per name in ``aggregator.types``, in that order (each name once)."""
    groups: dict[str, AggregatorGroup] = {}
    for name in settings.aggregator.types:
        if name in groups:
            continue
        group = load_group_class(name).from_config(settings)
        if not isinstance(group, AggregatorGroup):
            raise PluginError(
                f"aggregator type {name!r} built {type(group).__name__}, not an AggregatorGroup"
            )
        groups[name] = group
    return groups

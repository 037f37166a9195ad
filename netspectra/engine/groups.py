"""Aggregator groups chosen by name: ``aggregator.types`` → entry point ``netspectra.aggregators``.

Names resolve through :mod:`netspectra.plugins`: the built-ins (``exact``, ``sketch``) merged
with the entry points of any installed package, a name registered twice refused with both
distributions named. Each group class offers
``from_config(settings) -> group`` and implements :class:`~netspectra.engine.protocols.AggregatorGroup`.
"""

from __future__ import annotations

from typing import Any

from netspectra.config.models import Settings
from netspectra.engine.protocols import AggregatorGroup
from netspectra.errors import ConfigError, PluginError
from netspectra.plugins import BUILTIN_DISTRIBUTION, PluginRegistry, PluginScan, UnknownPluginError

ENTRY_POINT_GROUP = "netspectra.aggregators"
#: The built-in group types (registered under the same names in NetSpectra's pyproject.toml).
BUILTIN_GROUPS = {
    "exact": "netspectra.engine.exact.group:ExactGroup",
    "sketch": "netspectra.engine.sketch.group:SketchGroup",
}
REGISTRY = PluginRegistry("aggregator type", ENTRY_POINT_GROUP, BUILTIN_GROUPS)


def available_groups() -> PluginScan:
    """Every registered aggregator type, by name (duplicates refused, see :mod:`netspectra.plugins`)."""
    return REGISTRY.scan()


def load_group_class(name: str) -> Any:
    """The class registered under ``name``; ConfigError when unknown, PluginError when it fails to load."""
    try:
        group_class = REGISTRY.load(name)
    except UnknownPluginError as error:
        raise ConfigError(f"aggregator.types: {error}") from None
    if not callable(getattr(group_class, "from_config", None)):
        raise PluginError(
            f"aggregator type {name!r} ({REGISTRY.find(name).target}) has no from_config(settings) method"
        )
    return group_class


def check_group_type(name: str) -> None:
    """What ``config check`` asks of a type name: ConfigError when unknown, PluginError when unusable.

    A third-party type is imported and checked as :func:`load_group_class` does; a built-in is
    known to load (the unit tests build both), and importing it costs numpy (~0.1 s), so its
    registration is all that is looked up.
    """
    try:
        source = REGISTRY.find(name)
    except UnknownPluginError as error:
        raise ConfigError(f"aggregator.types: {error}") from None
    if source.distribution != BUILTIN_DISTRIBUTION or source.target != BUILTIN_GROUPS.get(name):
        load_group_class(name)


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

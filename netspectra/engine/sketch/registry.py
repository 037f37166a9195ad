"""Find sketch algorithms through the entry-point group ``netspectra.sketches`` and validate them.

Nothing is special-cased: the built-ins register in NetSpectra's own ``pyproject.toml`` exactly
as a third-party package does. Every failure is a :class:`PluginError` naming the plugin, its
distribution and what is wrong, so a broken plugin is reported and skipped, never fatal to the
others.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import BaseModel, ValidationError

from netspectra.engine.sketch.protocol import SketchAlgorithm, SketchParams
from netspectra.errors import PluginError

#: The entry-point group algorithms register under.
ENTRY_POINT_GROUP = "netspectra.sketches"
_REQUIRED_METHODS = ("insert", "query", "heavy_hitters", "reset", "merge")


@dataclass(frozen=True, slots=True)
class ParamInfo:
    name: str
    default: Any
    description: str


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """What ``netspectra plugins list`` shows for one entry point (``error`` set when it failed)."""

    name: str
    target: str
    distribution: str
    version: str
    summary: str = ""
    mergeable: bool = False
    params: tuple[ParamInfo, ...] = field(default_factory=tuple)
    error: str | None = None


def discover() -> dict[str, EntryPoint]:
    """Every registered algorithm by name (the first registration wins on duplicates)."""
    found: dict[str, EntryPoint] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(point.name, point)
    return found


def distribution_of(point: EntryPoint) -> tuple[str, str]:
    """(distribution name, version) of an entry point, ``("?", "?")`` when unknown."""
    dist = point.dist
    if dist is None:
        return "?", "?"
    return dist.metadata["Name"] or dist.name, dist.version


def _describe(point: EntryPoint) -> str:
    package, version = distribution_of(point)
    return f"sketch plugin {point.name!r} ({point.value}, distribution {package} {version})"


def load_algorithm(name: str, available: Mapping[str, EntryPoint] | None = None) -> type[SketchAlgorithm]:
    """The algorithm class registered as ``name``, imported and checked against the protocol."""
    points = dict(available) if available is not None else discover()
    point = points.get(name)
    if point is None:
        names = sorted(points)
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise PluginError(
            f"unknown sketch algorithm {name!r}{hint}; available: {', '.join(names) or 'none'}. "
            f"Install the package that provides it (it must register under {ENTRY_POINT_GROUP!r})."
        )
    try:
        algorithm = point.load()
    except Exception as error:
        raise PluginError(f"{_describe(point)} failed to import: {type(error).__name__}: {error}") from error
    check_algorithm(algorithm, _describe(point))
    return algorithm  # type: ignore[no-any-return]


def check_algorithm(algorithm: Any, described: str) -> None:
    """Raise unless ``algorithm`` is a class offering the :class:`SketchAlgorithm` protocol."""
    if not inspect.isclass(algorithm):
        raise PluginError(f"{described} is not a class (got {type(algorithm).__name__})")
    params = getattr(algorithm, "Params", None)
    if not (inspect.isclass(params) and issubclass(params, BaseModel)):
        raise PluginError(f"{described} has no 'Params' pydantic model (subclass SketchParams)")
    missing = [method for method in _REQUIRED_METHODS if not callable(getattr(algorithm, method, None))]
    if not hasattr(algorithm, "memory_bytes"):
        missing.append("memory_bytes")
    if missing:
        raise PluginError(f"{described} lacks {', '.join(missing)} of the sketch protocol")


def validate_params(algorithm: type[SketchAlgorithm], params: Mapping[str, Any], task: str) -> SketchParams:
    """The algorithm's params model built from a task's keys; the error names the task and each field."""
    try:
        return algorithm.Params.model_validate(dict(params))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or '(params)'}: {item['msg']}"
            for item in error.errors()
        )
        raise PluginError(
            f"sketch task {task!r}: invalid parameters for {algorithm.__name__}: {problems}"
        ) from error


def describe_all() -> list[PluginInfo]:
    """Every discovered plugin with its parameters, or the reason it cannot be used."""
    infos: list[PluginInfo] = []
    points = discover()
    for name in sorted(points):
        point = points[name]
        package, version = distribution_of(point)
        try:
            algorithm = load_algorithm(name, points)
        except PluginError as error:
            infos.append(PluginInfo(name, point.value, package, version, error=str(error)))
            continue
        fields = algorithm.Params.model_fields
        params = tuple(
            ParamInfo(key, spec.get_default(call_default_factory=True), spec.description or "")
            for key, spec in fields.items()
        )
        infos.append(
            PluginInfo(
                name,
                point.value,
                package,
                version,
                summary=str(getattr(algorithm, "summary", "")),
                mergeable=bool(getattr(algorithm, "mergeable", False)),
                params=params,
            )
        )
    return infos

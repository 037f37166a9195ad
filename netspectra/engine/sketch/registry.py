"""Find sketch algorithms through the entry-point group ``netspectra.sketches`` and validate them.

Names resolve through :mod:`netspectra.plugins`, as every registry does: the built-ins merged
with the entry points of installed packages, a name registered by two distributions refused with
both named. Every failure is a :class:`PluginError` naming the plugin, its distribution and what
is wrong, so a broken plugin is reported and skipped, never fatal to the others.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from netspectra.engine.sketch.params import SketchParams
from netspectra.errors import PluginError
from netspectra.plugins import (
    BUILTIN_DISTRIBUTION,
    PluginRegistry,
    PluginScan,
    PluginSource,
    duplicate_message,
)

if TYPE_CHECKING:  # the protocol module imports numpy, which config check does without
    from netspectra.engine.sketch.protocol import SketchAlgorithm

#: The entry-point group algorithms register under.
ENTRY_POINT_GROUP = "netspectra.sketches"
#: The built-in algorithms (registered under the same names in NetSpectra's pyproject.toml).
BUILTIN_ALGORITHMS = {
    "count_min": "netspectra.engine.sketch.count_min:CountMin",
    "super_spread": "netspectra.engine.sketch.super_spread:SuperSpread",
    "spread_sketch": "netspectra.engine.sketch.spread_sketch:SpreadSketch",
}
#: Each built-in's ``Params``, importable without the algorithm (see :func:`check_params`).
BUILTIN_PARAMS = {
    "count_min": "netspectra.engine.sketch.params:CountMinParams",
    "super_spread": "netspectra.engine.sketch.params:SuperSpreadParams",
    "spread_sketch": "netspectra.engine.sketch.params:SpreadSketchParams",
}
REGISTRY = PluginRegistry("sketch algorithm", ENTRY_POINT_GROUP, BUILTIN_ALGORITHMS)
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


def discover() -> PluginScan:
    """Every registered algorithm by name; names registered twice are in ``.duplicates``, refused."""
    return REGISTRY.scan()


def distribution_of(source: PluginSource) -> tuple[str, str]:
    """(distribution name, version) of a registered algorithm."""
    return source.distribution, source.version


def _describe(source: PluginSource) -> str:
    return f"sketch plugin {source.name!r} ({source.target}, distribution {source.origin})"


def load_algorithm(name: str, available: PluginScan | None = None) -> type[SketchAlgorithm]:
    """The algorithm class registered as ``name``, imported and checked against the protocol."""
    scan = available if available is not None else discover()
    algorithm = scan.load(name)
    check_algorithm(algorithm, _describe(scan.find(name)))
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
    return _validated(algorithm.Params, algorithm.__name__, params, task)


def check_params(name: str, params: Mapping[str, Any], task: str) -> SketchParams:
    """What ``config check`` asks of a sketch task: its algorithm exists and takes these parameters.

    A third-party algorithm is imported and checked against the protocol, as the engine will. A
    built-in is known to pass both (the unit tests hold it), so only its ``Params`` model is
    imported: the algorithm's module imports numpy, ~0.1 s of a check that must stay under 0.25 s.
    """
    scan = discover()
    source = scan.find(name)
    if source.distribution == BUILTIN_DISTRIBUTION and source.target == BUILTIN_ALGORITHMS.get(name):
        model = PluginSource(name, BUILTIN_PARAMS[name], source.distribution, source.version).import_target()
        return _validated(model, source.target.rpartition(":")[2], params, task)
    return validate_params(load_algorithm(name, scan), params, task)


def _validated(model: type[SketchParams], owner: str, params: Mapping[str, Any], task: str) -> SketchParams:
    try:
        return model.model_validate(dict(params))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or '(params)'}: {item['msg']}"
            for item in error.errors()
        )
        raise PluginError(f"sketch task {task!r}: invalid parameters for {owner}: {problems}") from error


def describe_all() -> list[PluginInfo]:
    """Every discovered plugin with its parameters, or the reason it cannot be used."""
    infos: list[PluginInfo] = []
    scan = discover()
    for name, sources in scan.duplicates.items():
        error = PluginError(duplicate_message(scan.kind, name, sources))
        infos += [PluginInfo(name, s.target, s.distribution, s.version, error=str(error)) for s in sources]
    for name in sorted(scan):
        source = scan[name]
        try:
            algorithm = load_algorithm(name, scan)
        except PluginError as error:
            infos.append(
                PluginInfo(name, source.target, source.distribution, source.version, error=str(error))
            )
            continue
        fields = algorithm.Params.model_fields
        params = tuple(
            ParamInfo(key, spec.get_default(call_default_factory=True), spec.description or "")
            for key, spec in fields.items()
        )
        infos.append(
            PluginInfo(
                name,
                source.target,
                source.distribution,
                source.version,
                summary=str(getattr(algorithm, "summary", "")),
                mergeable=bool(getattr(algorithm, "mergeable", False)),
                params=params,
            )
        )
    return sorted(infos, key=lambda info: (info.name, info.distribution))

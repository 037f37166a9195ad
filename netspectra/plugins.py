"""One loader for every registry: a name → ``"module:attr"`` map of built-ins merged with entry points.

Aggregator group types (``netspectra.aggregators``), sketch algorithms (``netspectra.sketches``)
and writer types all resolve names here, so they share one policy:

* a name registered by two distributions is refused, and the error names both (no silent
  first-wins or last-wins: which one ran would depend on install order);
* an unknown name gets "did you mean …" and the list of available names;
* a plugin that fails to import is reported with its name, target and distribution, and only
  that name fails: the registry and every other plugin keep working.

Built-ins are listed in code, so they resolve even where NetSpectra's own entry points are not
installed (a source checkout); NetSpectra's ``pyproject.toml`` registers the same targets, and a
registration identical to a built-in is the same plugin, not a duplicate.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from netspectra import __version__
from netspectra.errors import PluginError

#: The distribution the built-ins belong to.
BUILTIN_DISTRIBUTION = "netspectra"


@dataclass(frozen=True, slots=True)
class PluginSource:
    """Where one registered name comes from."""

    name: str
    target: str  # "module:attr"
    distribution: str
    version: str

    @property
    def origin(self) -> str:
        """``"netspectra-heavykeeper 0.1.0"``."""
        return f"{self.distribution} {self.version}"

    def import_target(self) -> Any:
        """The object ``target`` names (any exception of the import propagates)."""
        module_name, _, attribute = self.target.partition(":")
        loaded: Any = import_module(module_name.strip())
        for part in attribute.strip().split(".") if attribute.strip() else ():
            loaded = getattr(loaded, part)
        return loaded


class _InstalledPoints:
    """Every installed entry point, read once per state of ``sys.path`` for all registries.

    One ``entry_points()`` reads every distribution's entry points; asking it once per group (the
    registries of aggregator types and sketch algorithms, and each again after a change) read them
    all each time. A distribution's name and version come from its METADATA, parsed with the
    email parser (~1 ms each): once per distribution here, where each point used to parse it twice
    (``metadata["Name"]``, then ``version``).
    """

    def __init__(self) -> None:
        self._installed: tuple[tuple[str, int | None], ...] | None = None
        self._points: Any = None  # what entry_points() gave: .select(group=...) on 3.11 and later
        self._groups: dict[str, list[PluginSource]] = {}
        self._origins: dict[int, tuple[str, str]] = {}  # id(distribution) → (name, version)

    def sources(self, group: str, installed: tuple[tuple[str, int | None], ...]) -> list[PluginSource]:
        if self._installed != installed:
            self._installed, self._points = installed, entry_points()
            self._groups, self._origins = {}, {}
        if group not in self._groups:
            self._groups[group] = [
                PluginSource(point.name, point.value, *self._origin(point.dist))
                for point in self._points.select(group=group)
            ]
        return self._groups[group]

    def _origin(self, dist: Any) -> tuple[str, str]:
        if dist is None:
            return ("?", "?")
        if id(dist) not in self._origins:  # the points keep their distribution alive: ids are stable
            metadata = dist.metadata
            self._origins[id(dist)] = (metadata["Name"] or dist.name, metadata["Version"] or "?")
        return self._origins[id(dist)]


#: Shared by every registry of the process (each keeps its own last scan on top of it).
_INSTALLED = _InstalledPoints()


class UnknownPluginError(PluginError):
    """No distribution registers the name (the message suggests the closest and lists the rest)."""


class DuplicatePluginError(PluginError):
    """Two distributions register the same name; the message names both."""


@dataclass(frozen=True)
class PluginScan(Mapping[str, PluginSource]):
    """What one look at the installed distributions found: usable names, and refused duplicates."""

    kind: str
    group: str | None
    sources: dict[str, PluginSource]
    duplicates: dict[str, tuple[PluginSource, ...]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> PluginSource:
        return self.sources[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.sources)

    def __len__(self) -> int:
        return len(self.sources)

    def find(self, name: str) -> PluginSource:
        """The source registered as ``name``; UnknownPluginError or DuplicatePluginError otherwise."""
        if name in self.duplicates:
            raise DuplicatePluginError(duplicate_message(self.kind, name, self.duplicates[name]))
        source = self.sources.get(name)
        if source is None:
            known = sorted({*self.sources, *self.duplicates})
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            listed = ", ".join(known) or "none"
            where = f" (it must register under {self.group!r})" if self.group else ""
            raise UnknownPluginError(
                f"unknown {self.kind} {name!r}{hint}; available: {listed}. "
                f"Install the package that provides it{where}."
            )
        return source

    def load(self, name: str) -> Any:
        """The object registered as ``name``; a failed import is a PluginError naming its distribution."""
        source = self.find(name)
        try:
            return source.import_target()
        except Exception as error:
            raise PluginError(
                f"{self.kind} {name!r} ({source.target}, distribution {source.origin}) failed to import: "
                f"{type(error).__name__}: {error}"
            ) from error


def duplicate_message(kind: str, name: str, sources: tuple[PluginSource, ...]) -> str:
    registered = " and ".join(f"{source.origin} ({source.target})" for source in sources)
    return (
        f"{kind} {name!r} is registered by more than one distribution: {registered}; "
        "uninstall all but one of them"
    )


class PluginRegistry:
    """Names of one kind: ``builtins`` merged with the entry points of ``group`` (None: built-ins only).

    Each :meth:`scan` sees the distributions installed now, so a package installed while the
    process runs (or a test's temporary ``.dist-info``) is seen: the last scan is reused only
    while no directory of ``sys.path`` changed (the test importlib.metadata's own directory cache
    makes). Reading every distribution's entry points and metadata took ~5 ms a scan here, and
    ``config check`` asks up to once per sketch task and aggregator type; the registries share one
    reading of the entry points (:class:`_InstalledPoints`).
    """

    def __init__(self, kind: str, group: str | None, builtins: Mapping[str, str]) -> None:
        self.kind = kind
        self.group = group
        self.builtins = dict(builtins)
        self._last: tuple[tuple[tuple[str, int | None], ...], PluginScan] | None = None

    def scan(self) -> PluginScan:
        installed = _installed_fingerprint() if self.group else ()
        if self._last is not None and self._last[0] == installed:
            return self._last[1]
        scan = self._scan(installed)
        self._last = (installed, scan)
        return scan

    def _scan(self, installed: tuple[tuple[str, int | None], ...]) -> PluginScan:
        found: dict[str, list[PluginSource]] = {
            name: [PluginSource(name, target, BUILTIN_DISTRIBUTION, __version__)]
            for name, target in self.builtins.items()
        }
        for source in _INSTALLED.sources(self.group, installed) if self.group else ():
            held = found.setdefault(source.name, [])
            if any(_same(source, other) for other in held):
                continue  # NetSpectra's own entry point of a built-in, or one dist seen twice
            held.append(source)
        return PluginScan(
            self.kind,
            self.group,
            {name: sources[0] for name, sources in sorted(found.items()) if len(sources) == 1},
            {
                name: tuple(sorted(sources, key=lambda source: _normal(source.distribution)))
                for name, sources in sorted(found.items())
                if len(sources) > 1
            },
        )

    def find(self, name: str) -> PluginSource:
        return self.scan().find(name)

    def load(self, name: str) -> Any:
        return self.scan().load(name)


def _installed_fingerprint() -> tuple[tuple[str, int | None], ...]:
    """Each ``sys.path`` entry with its modification time: installing or removing a distribution
    adds or removes a directory (its ``.dist-info``) in one of them, which changes that time."""
    stamps: list[tuple[str, int | None]] = []
    for entry in sys.path:
        directory = entry or os.getcwd()  # "" is the working directory, wherever it is now
        try:
            stamps.append((directory, os.stat(directory).st_mtime_ns))
        except OSError:
            stamps.append((directory, None))
    return tuple(stamps)


def _same(one: PluginSource, other: PluginSource) -> bool:
    """The same registration: one distribution, one target (its version may differ in dev installs)."""
    return one.target.replace(" ", "") == other.target.replace(" ", "") and _normal(
        one.distribution
    ) == _normal(other.distribution)


def _normal(distribution: str) -> str:
    return distribution.lower().replace("_", "-").replace(".", "-")

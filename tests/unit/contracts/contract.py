"""Checks that fail loudly, naming the attribute, the library and its installed version.

A contract test exists because NetSpectra reaches into a library's private internals (always in
one ``*_internals`` module). When an upgrade moves one, the failure must say exactly what moved
and where we depend on it, not surface as an AttributeError deep inside a pipeline test.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version
from typing import Any

import pytest

_MISSING = object()


class Contract:
    """The private surface one ``netspectra/*/<lib>_internals.py`` module uses of one distribution."""

    def __init__(self, distribution: str, module: str) -> None:
        self.distribution = distribution
        self.version = version(distribution)
        self.module = module

    def fail(self, what: str) -> None:
        pytest.fail(
            f"{self.distribution} {self.version}: {what}. {self.module} relies on it: adapt that module "
            f"(and the {self.distribution} pin in pyproject.toml) to this version",
            pytrace=False,
        )

    def attribute(self, owner: Any, name: str) -> Any:
        """``owner.name`` without running descriptors; fails naming it when absent."""
        value = inspect.getattr_static(owner, name, _MISSING)
        if value is _MISSING:
            self.fail(f"{_name(owner)}.{name} no longer exists")
        return value

    def parameters(self, owner: Any, name: str, expected: list[str]) -> None:
        """``owner.name`` is a function whose parameters begin with ``expected`` (names, in order)."""
        function = self.attribute(owner, name)
        if not callable(function):
            self.fail(f"{_name(owner)}.{name} is no longer callable")
        got = list(inspect.signature(function).parameters)
        if got[: len(expected)] != expected:
            self.fail(
                f"{_name(owner)}.{name} takes ({', '.join(got)}), expected ({', '.join(expected)}, ...)"
            )

    def check(self, condition: bool, what: str) -> None:
        if not condition:
            self.fail(what)


def _name(owner: Any) -> str:
    kind = owner if isinstance(owner, type) else type(owner)
    return f"{kind.__module__}.{kind.__qualname__}"

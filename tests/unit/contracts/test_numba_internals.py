"""numba's private cache index used by netspectra/numba_internals.py, on a real cached kernel."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numba
import pytest

from netspectra.numba_internals import has_valid_cache
from tests.unit.contracts.contract import Contract

NUMBA = Contract("numba", "netspectra/numba_internals.py")


def test_version_is_within_the_pin() -> None:
    major_minor = tuple(int(part) for part in numba.__version__.split(".")[:2])
    NUMBA.check((0, 60) <= major_minor < (0, 69), "the code was written for numba 0.60-0.68")


def test_cache_index_answers_before_and_after_a_compile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh kernel has no cache entry; once called (compiled and saved) it has one."""
    source = tmp_path / "contract_kernel_module.py"
    source.write_text(
        textwrap.dedent(
            """
            import numba

            @numba.njit(cache=True)
            def double(x):
                return 2 * x
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import contract_kernel_module as module

    try:
        dispatcher = module.double
        cache = NUMBA.attribute(dispatcher, "_cache")
        cache_file = NUMBA.attribute(dispatcher._cache, "_cache_file")
        NUMBA.parameters(type(cache_file), "_load_index", ["self"])
        NUMBA.check(cache is not None, "Dispatcher._cache is None for a cache=True kernel")
        NUMBA.check(not has_valid_cache(dispatcher), "a never-compiled kernel reads as cached")
        assert dispatcher(21) == 42
        NUMBA.check(has_valid_cache(dispatcher), "a compiled, saved kernel reads as not cached")
    finally:
        sys.modules.pop("contract_kernel_module", None)

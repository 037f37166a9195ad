"""numba's private cache index used by netspectra/numba_internals.py, on a real cached kernel."""

from __future__ import annotations

import inspect
import sys
import textwrap
from pathlib import Path

import numba
import numpy as np
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


_TWO_EXPORTS = """
import numpy as np
import numba

_SNIFF = -1
_LLC = 1


@numba.njit(inline="always")
def pick(kind):
    state = _SNIFF  # a literal the branches below replace: typing it needs SSA
    if kind > 1500:
        state = _LLC
    return state


@numba.njit(nogil=True)
def first(values):
    total = 0
    for value in values:
        total += pick(value)
    return total


@numba.njit(nogil=True)
def second(values):
    return pick(values[0]) + pick(values[-1])
"""


@pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaPendingDeprecationWarning")  # numba.pycc's
def test_pycc_compiles_every_export_with_flags_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two exports inlining one helper compile (the shared flags lost SSA after the first), and each
    export's flags release the GIL (what ``nogil=True`` kernels promise the analyze threads)."""
    import numba.pycc.compiler as pycc_compiler
    from numba.pycc import CC

    from netspectra.numba_internals import pycc_releasing_gil

    NUMBA.attribute(pycc_compiler, "compile_extra")
    cull = NUMBA.attribute(pycc_compiler.ModuleCompiler, "_cull_exports")
    NUMBA.check(
        "compile_extra(" in inspect.getsource(cull),
        "ModuleCompiler._cull_exports no longer calls compile_extra",
    )
    (tmp_path / "two_exports_source.py").write_text(_TWO_EXPORTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    import two_exports_source as source

    seen: list[bool] = []
    original = pycc_compiler.compile_extra

    def spy(*args: object, **kw: object) -> object:
        seen.append(bool(args[5].release_gil))  # type: ignore[attr-defined]
        return original(*args, **kw)  # type: ignore[arg-type]

    compiler = CC("two_exports_aot")
    compiler.output_dir = str(tmp_path)
    compiler.verbose = False
    compiler.export("first", "i8(i8[::1])")(source.first.py_func)
    compiler.export("second", "i8(i8[::1])")(source.second.py_func)
    try:
        monkeypatch.setattr(pycc_compiler, "compile_extra", spy)
        with pycc_releasing_gil():
            compiler.compile()
        assert pycc_compiler.compile_extra is spy  # put back as it was
        NUMBA.check(seen == [True, True], f"pycc's flags per export: release_gil {seen}, wanted [True, True]")
        import two_exports_aot as compiled

        values = np.array([100, 2000, 1600, 5], np.int64)
        assert compiled.first(values) == source.first(values) == 0
        assert compiled.second(values) == source.second(values) == -2
    finally:
        sys.modules.pop("two_exports_source", None)
        sys.modules.pop("two_exports_aot", None)

"""The one place NetSpectra reads numba's private internals (tested in tests/unit/contracts).

numba offers no public way to ask whether a kernel's on-disk cache holds an entry for its
current source without compiling it, and the warm-up needs exactly that question answered so a
first run can say "compiling kernels" instead of reporting a rate that includes the compile;
and the ahead-of-time build (:mod:`netspectra.aot`) needs ``numba.pycc`` to compile each export
with flags of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def has_valid_cache(dispatcher: Any) -> bool:
    """Whether numba's on-disk index of ``dispatcher`` holds an entry for the current source.

    Reads ``Dispatcher._cache._cache_file._load_index()`` (numba 0.60-0.68), which returns ``{}``
    when the index is missing, of another numba version, or older than the source file. Should a
    numba release move it, the kernel counts as cached: a slower first run rather than a failed
    one, and ``tests/unit/contracts/test_numba_internals.py`` fails naming what moved.
    """
    try:
        return bool(dispatcher._cache._cache_file._load_index())
    except AttributeError:
        return True


@contextmanager
def pycc_releasing_gil() -> Iterator[None]:
    """Meanwhile, ``numba.pycc`` compiles each exported function with its own flags, releasing the GIL.

    ``numba.pycc.compiler.ModuleCompiler._cull_exports`` (numba 0.60-0.68) builds one ``Flags()``
    and passes it to ``compile_extra`` for every export. Two things go wrong with that: numba's
    inliner sets ``flags.enable_ssa = False`` on the flags it is given, so every export after the
    first that inlines an ``inline="always"`` helper fails to type (``No conversion from
    Literal[int](1) to Literal[int](-1)`` in ``decode_frame``); and ``release_gil`` stays False,
    so the compiled kernels would hold the GIL that the analyze pipeline's threads need (the
    kernels are ``nogil=True`` under the JIT). Wrapping the module's ``compile_extra`` to pass a
    copy with ``release_gil=True`` fixes both; ``tests/unit/contracts/test_numba_internals.py``
    checks the names this relies on.
    """
    import numba.pycc.compiler as pycc_compiler

    original = pycc_compiler.compile_extra

    def compile_extra(
        typingctx: Any, targetctx: Any, func: Any, args: Any, return_type: Any, flags: Any, **kw: Any
    ) -> Any:
        own = flags.copy()
        own.release_gil = True
        return original(typingctx, targetctx, func, args, return_type, own, **kw)

    pycc_compiler.compile_extra = compile_extra  # type: ignore[assignment]
    try:
        yield
    finally:
        pycc_compiler.compile_extra = original

"""The one place NetSpectra reads numba's private internals (tested in tests/unit/contracts).

numba offers no public way to ask whether a kernel's on-disk cache holds an entry for its
current source without compiling it, and the warm-up needs exactly that question answered so a
first run can say "compiling kernels" instead of reporting a rate that includes the compile.
"""

from __future__ import annotations

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

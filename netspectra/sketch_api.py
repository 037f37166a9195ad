"""The one public import for sketch plugins: ``from netspectra.sketch_api import ...``.

A plugin that reaches into ``netspectra.engine`` or ``netspectra.model`` couples itself to how
NetSpectra is laid out inside; this module names what a plugin may rely on, so those modules
can move without breaking a third-party package. Everything here is re-exported unchanged: the
murmur3 helpers stay defined in :mod:`netspectra.engine.sketch.murmur3`, so a plugin's cached
numba kernel calls the very same functions the built-ins do. (``murmur3_row`` is inlined into
the caller when it compiles, and numba's on-disk cache does not notice edits of another module,
so a plugin's cached kernel keeps the hash it was compiled with until its ``__pycache__`` numba
files are removed.)

The murmur3 helpers are numba functions, so they are imported on first use (PEP 562): a plugin
whose class module takes only the numba-free names (``SketchParams``, ``SketchBase``, ...) and
keeps its kernels in a module of their own imports without numba, which keeps ``netspectra
config check`` and ``plugins list`` fast (see docs/plugins.md, "the kernel").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from netspectra.engine.sketch.protocol import (
    KeyMatrix,
    SketchAlgorithm,
    SketchBase,
    SketchParams,
    SketchState,
    SketchStateError,
    decode_state,
    encode_state,
    peek_algorithm,
)
from netspectra.errors import PluginError
from netspectra.model.fields import KeyField
from netspectra.model.keys import key_width
from netspectra.model.snapshot import HeavyHitter, HitterKind

if TYPE_CHECKING:
    from netspectra.engine.sketch.murmur3 import murmur3_row, murmur3_rows, row_seeds

_NUMBA_NAMES = frozenset({"murmur3_row", "murmur3_rows", "row_seeds"})


def __getattr__(name: str) -> Any:
    if name in _NUMBA_NAMES:
        from netspectra.engine.sketch import murmur3

        return getattr(murmur3, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "HeavyHitter",
    "HitterKind",
    "KeyField",
    "KeyMatrix",
    "PluginError",
    "SketchAlgorithm",
    "SketchBase",
    "SketchParams",
    "SketchState",
    "SketchStateError",
    "decode_state",
    "encode_state",
    "key_width",
    "murmur3_row",
    "murmur3_rows",
    "peek_algorithm",
    "row_seeds",
]

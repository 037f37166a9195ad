"""The kernels' ``njit``: the ahead-of-time compiled module when it matches the source, else numba.

``import numba`` alone costs 0.29-0.38 s here and the first cached kernel it loads another
~0.28 s (numba builds its LLVM target), so a 1 000-frame ``analyze`` spent ~0.6 s of its ~1 s in
numba before counting a packet (issue 12). ``netspectra warmup`` (run at install by
``scripts/dev``) therefore also compiles the analyze path's kernels with ``numba.pycc`` into one
plain CPython extension, ``netspectra/_aot_kernels*.so``, with a manifest beside it
(``_aot_kernels.json``: the hash of the kernel sources it was built from and, per kernel, the
argument types of each compiled entry; see :mod:`netspectra.aot`). Importing it takes ~1 ms.

The kernel modules of :data:`AOT_MODULES` decorate with :func:`njit` from here instead of
numba's. When the module is present and its manifest's hash equals the hash of the sources now
on disk, :func:`njit` returns an :class:`AotKernel`: a call whose arguments have exactly the
types of a compiled entry (dtype, dimensions, layout, read-only, aligned — what numba's
``typeof`` would say) runs that entry, with no numba in the process; any other call compiles the
kernel with numba as today and says so once in the log. Otherwise (no module, a stale one, or
``NETSPECTRA_AOT=0``) :func:`njit` *is* ``numba.njit`` and nothing changes.

njit code elsewhere may call an :class:`AotKernel` (``sflow`` calls ``parse_frames``): numba
types it through ``_numba_type_``, which hands over the JIT dispatcher. Helpers that exist only
for numba's compiler (the LLVM intrinsics) are imported with :func:`numba_only`, which in AOT
mode defers the import until a kernel is compiled.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

PACKAGE = Path(__file__).resolve().parent
AOT_MODULE = "netspectra._aot_kernels"
MANIFEST = PACKAGE / "_aot_kernels.json"
MANIFEST_FORMAT = 1
#: ``NETSPECTRA_AOT=0`` ignores the compiled module (numba's JIT, as before it existed).
ENV_SWITCH = "NETSPECTRA_AOT"
#: The modules whose kernels are compiled ahead of time: every kernel ``analyze`` runs (the
#: capture walkers, the exact tables, the key builder, the sketches, their state, the writers'
#: text columns). Each decorates with :func:`njit` from here.
AOT_MODULES = (
    "netspectra.capture.kernel",
    "netspectra.model.key_kernel",
    "netspectra.engine.exact.table",
    "netspectra.engine.sketch.murmur3",
    "netspectra.engine.sketch.count_min_kernels",
    "netspectra.engine.sketch.super_spread_kernels",
    "netspectra.engine.sketch.spread_sketch_kernels",
    "netspectra.engine.sketch.state_kernels",
    "netspectra.storage.text_kernels",
)
#: Sources compiled into those kernels besides their own modules (inlined into them).
AOT_EXTRA_SOURCES = ("netspectra.engine.sketch.intrinsics", "netspectra.storage.text_intrinsics")

#: A compiled entry's key: one item per argument (see :func:`arg_key`).
ArgKey = tuple[Any, ...]


def source_path(module: str) -> Path:
    return PACKAGE.parent.joinpath(*module.split(".")).with_suffix(".py")


def source_hash() -> str:
    """sha256 over every source the compiled kernels come from (its names and bytes, in order)."""
    digest = hashlib.sha256()
    for module in (*AOT_MODULES, *AOT_EXTRA_SOURCES):
        digest.update(module.encode() + b"\0" + source_path(module).read_bytes() + b"\0")
    return digest.hexdigest()


def arg_key(value: Any) -> Any:
    """What numba's ``typeof`` would decide about one argument, as plain data (None: not compiled).

    Arrays: ``(dtype.str, ndim, layout, readonly, aligned)`` with numba's layout rule (C if
    C-contiguous, else F if F-contiguous, else A); Python ``bool``/``int``/``float`` become
    numba's ``bool``/``int64``/``float64``, numpy scalars their dtype's name.
    """
    if isinstance(value, np.ndarray):
        flags = value.flags
        layout = "C" if flags.c_contiguous else "F" if flags.f_contiguous else "A"
        return (value.dtype.str, value.ndim, layout, not flags.writeable, flags.aligned)
    if isinstance(value, bool | np.bool_):
        return "bool"
    if isinstance(value, int):
        return "int64" if -(1 << 63) <= value < (1 << 63) else None
    if isinstance(value, np.integer | np.floating):
        return value.dtype.name
    if isinstance(value, float):
        return "float64"
    return None


@dataclass
class AotState:
    """The loaded module and its manifest's entries: kernel name → {argument key: function}."""

    module: Any
    entries: dict[str, dict[ArgKey, Callable[..., Any]]]
    #: Kernels that fell back to numba in this process (logged once each).
    fallbacks: set[str] = field(default_factory=set)
    #: How often compiled entries ran, and how often calls fell back to numba, per kernel (what
    #: tests check the AOT path was taken by).
    calls: dict[str, int] = field(default_factory=dict)
    fallback_calls: dict[str, int] = field(default_factory=dict)


_lock = threading.RLock()
_resolved = False
_state: AotState | None = None
_force_jit = False


def aot_state() -> AotState | None:
    """The compiled module if it is present and matches the source (decided once per process)."""
    global _resolved, _state
    with _lock:
        if not _resolved:
            _state, reason = _load()
            _resolved = True
            if _state is None:
                log.info("Kernels: numba JIT (%s)", reason)
            else:
                count = sum(len(entries) for entries in _state.entries.values())
                log.info(
                    "Kernels: ahead-of-time module, %d entries of %d kernels", count, len(_state.entries)
                )
        return _state


def _load() -> tuple[AotState | None, str]:
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return None, f"{ENV_SWITCH}=0"
    if not MANIFEST.is_file():
        return None, "no ahead-of-time module: `netspectra warmup` builds it"
    try:
        manifest = json.loads(MANIFEST.read_text())
        if manifest.get("format") != MANIFEST_FORMAT:
            return None, f"{MANIFEST.name} is of another format: `netspectra warmup` rebuilds it"
        if manifest["source_hash"] != source_hash():
            return (
                None,
                "the kernel sources changed since the ahead-of-time build: `netspectra warmup` rebuilds it",
            )
        if manifest["numpy"] != np.__version__:
            return None, f"built for numpy {manifest['numpy']}, running {np.__version__}"
        module = importlib.import_module(AOT_MODULE)
        if module.manifest_token() != manifest["token"]:
            return None, f"{AOT_MODULE} and {MANIFEST.name} are from different builds"
    except (OSError, ImportError, ValueError, KeyError, AttributeError) as error:
        return None, f"cannot load the ahead-of-time module: {error}"
    entries: dict[str, dict[ArgKey, Callable[..., Any]]] = {}
    for kernel, compiled in manifest["kernels"].items():
        entries[kernel] = {
            tuple(tuple(arg) if isinstance(arg, list) else arg for arg in entry["args"]): getattr(
                module, entry["symbol"]
            )
            for entry in compiled
        }
    return AotState(module, entries), ""


class AotKernel:
    """A kernel that runs its compiled entry when one has the call's argument types, else numba.

    Keeps ``py_func`` and ``targetoptions`` as numba's dispatcher does (numba's inliner reads
    them); other attributes (``signatures``, ``stats``, ...) are the JIT dispatcher's.
    """

    def __init__(self, py_func: Callable[..., Any], options: dict[str, Any], state: AotState) -> None:
        self.py_func = py_func
        self.targetoptions = options
        self.name = f"{py_func.__module__}.{py_func.__name__}"
        self.__name__ = py_func.__name__
        self.__qualname__ = py_func.__qualname__
        self.__doc__ = py_func.__doc__
        self.__module__ = py_func.__module__
        self.__wrapped__ = py_func
        self._state = state
        self._entries = state.entries.get(self.name, {})
        self._dispatcher: Any = None

    def __call__(self, *args: Any) -> Any:
        if not _force_jit:
            entry = self._entries.get(tuple(map(arg_key, args)))
            if entry is not None:
                calls = self._state.calls
                calls[self.name] = calls.get(self.name, 0) + 1
                return entry(*args)
            self._say_fallback(args)
        return self.dispatcher()(*args)

    def aot_entry(self, *args: Any) -> Callable[..., Any] | None:
        """The compiled entry these arguments would run, or None."""
        return self._entries.get(tuple(map(arg_key, args)))

    def dispatcher(self) -> Any:
        """numba's JIT dispatcher of this kernel (created, with numba imported, on first use)."""
        if self._dispatcher is None:
            with _lock:
                if self._dispatcher is None:
                    import numba

                    _resolve_numba_only()
                    self._dispatcher = numba.njit(**self.targetoptions)(self.py_func)
        return self._dispatcher

    def _say_fallback(self, args: tuple[Any, ...]) -> None:
        counts = self._state.fallback_calls
        counts[self.name] = counts.get(self.name, 0) + 1
        if self.name in self._state.fallbacks:
            return
        self._state.fallbacks.add(self.name)
        log.info(
            "Kernel %s has no ahead-of-time entry for arguments %s: compiled by numba",
            self.name,
            [arg_key(arg) for arg in args],
        )

    def __getattr__(self, name: str) -> Any:
        # only reached for what __init__ did not set: numba's typing (``_numba_type_``) and the
        # dispatcher's introspection (``signatures``, ``stats``) for tools and tests
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return getattr(self.dispatcher(), name)

    def __repr__(self) -> str:
        return f"<AotKernel {self.name} ({len(self._entries)} compiled entries)>"


def njit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit(**options)``, or an :class:`AotKernel` when the compiled module is valid."""

    def decorate(py_func: Callable[..., Any]) -> Any:
        state = aot_state()
        if state is None:
            import numba

            return numba.njit(**options)(py_func)
        return AotKernel(py_func, options, state)

    return decorate


class _NumbaOnly:
    """Stands for a numba-only helper (an intrinsic) until a kernel needs compiling."""

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name

    def resolve(self) -> Any:
        return getattr(importlib.import_module(self.module), self.name)

    def __call__(self, *args: Any) -> Any:
        raise TypeError(f"{self.module}.{self.name} exists only inside numba kernels")


def numba_only(module: str, name: str) -> Any:
    """``from module import name`` for what only numba's compiler uses; deferred in AOT mode."""
    if aot_state() is None:
        return getattr(importlib.import_module(module), name)
    return _NumbaOnly(module, name)


def _resolve_numba_only() -> None:
    """Before numba compiles a kernel of an AOT module: put the real helpers into their globals."""
    for module_name in AOT_MODULES:
        module = sys.modules.get(module_name)
        if module is None:
            continue
        for name, value in list(vars(module).items()):
            if isinstance(value, _NumbaOnly):
                setattr(module, name, value.resolve())


@contextmanager
def forced_jit() -> Iterator[None]:
    """Run every :class:`AotKernel` through numba meanwhile (tests compare the two paths)."""
    global _force_jit
    with _lock:
        previous, _force_jit = _force_jit, True
    try:
        yield
    finally:
        _force_jit = previous

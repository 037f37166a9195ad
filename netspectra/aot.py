"""Compile the analyze path's kernels ahead of time with ``numba.pycc`` (``netspectra warmup``).

What the build makes and how a run uses it is written in :mod:`netspectra.jit`. The entries are
exactly the signatures the JIT compiled in this process: :func:`netspectra.warmup.warm_up` runs
every kernel with the argument types the real paths use, so after it each dispatcher of
:data:`~netspectra.jit.AOT_MODULES` lists them (39 entries of 36 kernels today). The build runs
under numba's JIT (``NETSPECTRA_AOT=0``), needs a C compiler and the Python headers (``scripts/dev``
installs gcc and python3-dev), takes 75-100 s here, and replaces nothing until it has succeeded:
a failed build leaves the JIT path in charge and the install goes on.

numba.pycc is pending deprecation in numba 0.68 (no removal date yet); should a release drop
it, the build reports it cannot import it and everything runs under the JIT as before.
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netspectra.jit import (
    AOT_MODULE,
    AOT_MODULES,
    MANIFEST,
    MANIFEST_FORMAT,
    PACKAGE,
    aot_state,
    source_hash,
)


@dataclass(frozen=True)
class BuildResult:
    built: bool
    message: str
    seconds: float = 0.0


def numba_key(numba_type: Any) -> Any:
    """:func:`netspectra.jit.arg_key` of a value numba types as ``numba_type``."""
    import numpy as np
    from numba.core import types

    if isinstance(numba_type, types.Array):
        dtype = np.dtype(str(numba_type.dtype)).str
        return [dtype, numba_type.ndim, numba_type.layout, not numba_type.mutable, numba_type.aligned]
    if isinstance(numba_type, types.Boolean):
        return "bool"
    if isinstance(numba_type, types.Integer | types.Float):
        return numba_type.name
    raise ValueError(f"no ahead-of-time dispatch for arguments of type {numba_type}")


def compiled_signatures() -> dict[str, list[Any]]:
    """Kernel name → the signatures its JIT dispatcher holds (``inline="always"`` helpers left out)."""
    from numba.core.registry import CPUDispatcher

    found: dict[str, list[Any]] = {}
    for name in AOT_MODULES:
        module = importlib.import_module(name)
        for attribute, value in sorted(vars(module).items()):
            if not isinstance(value, CPUDispatcher) or value.py_func.__module__ != name:
                continue
            if value.targetoptions.get("inline", "never") == "always" or not value.signatures:
                continue
            overloads: dict[Any, Any] = value.overloads
            found[f"{name}.{attribute}"] = [
                overloads[args].signature.return_type(*args) for args in value.signatures
            ]
    return found


def is_up_to_date() -> bool:
    """Whether the module on disk was built from the sources on disk (for this numpy)."""
    import numpy as np

    try:
        manifest = json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        return False
    return (
        manifest.get("format") == MANIFEST_FORMAT
        and manifest.get("source_hash") == source_hash()
        and manifest.get("numpy") == np.__version__
        and any(PACKAGE.glob(f"{AOT_MODULE.rpartition('.')[2]}.*.so"))
    )


def build(output_dir: Path = PACKAGE) -> BuildResult:
    """Compile every signature the JIT holds now into ``output_dir`` (the package: where it is found).

    Call after :func:`~netspectra.warmup.warm_up` in a process running the JIT.
    """
    if aot_state() is not None:
        raise RuntimeError("the ahead-of-time build reads the JIT's signatures: run it with NETSPECTRA_AOT=0")
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():  # its pending deprecation, said in the module docstring
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            from numba.pycc import CC
    except ImportError as error:
        return BuildResult(False, f"numba.pycc is not available ({error}): the kernels run under numba's JIT")
    import numpy as np

    from netspectra.numba_internals import pycc_releasing_gil

    signatures = compiled_signatures()
    token = secrets.randbits(62)
    short_name = AOT_MODULE.rpartition(".")[2]
    kernels: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="netspectra-aot-") as scratch:
        compiler = CC(short_name)
        compiler.output_dir = scratch
        compiler.verbose = False
        namespace: dict[str, Any] = {}
        exec(f"def manifest_token():\n    return {token}\n", namespace)  # a constant the .so returns
        compiler.export("manifest_token", "i8()")(namespace["manifest_token"])
        symbol = 0
        for kernel, kernel_signatures in signatures.items():
            module_name, _, attribute = kernel.rpartition(".")
            py_func = getattr(importlib.import_module(module_name), attribute).py_func
            for signature in kernel_signatures:
                name = f"k{symbol}"
                symbol += 1
                compiler.export(name, signature)(py_func)
                kernels.setdefault(kernel, []).append(
                    {
                        "symbol": name,
                        "args": [numba_key(arg) for arg in signature.args],
                        "signature": str(signature),
                    }
                )
        try:
            with pycc_releasing_gil():
                compiler.compile()
        except Exception as error:  # a compiler, a header or numba itself: the JIT path stays
            return BuildResult(
                False,
                f"ahead-of-time build failed ({type(error).__name__}: {error}): kernels run under the JIT",
            )
        built = next(Path(scratch).glob(f"{short_name}.*"))
        output_dir.mkdir(parents=True, exist_ok=True)
        os.replace(built, output_dir / built.name)  # the manifest's token tells a half-replaced pair
    manifest = {
        "format": MANIFEST_FORMAT,
        "source_hash": source_hash(),
        "numpy": np.__version__,
        "token": token,
        "kernels": kernels,
    }
    partial = output_dir / (MANIFEST.name + ".partial")
    partial.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(partial, output_dir / MANIFEST.name)
    entries = sum(len(entries) for entries in kernels.values())
    seconds = time.perf_counter() - started
    return BuildResult(True, f"{entries} entries of {len(kernels)} kernels compiled ahead of time", seconds)

"""The layout's promises, read from the source with ast: what each module may import."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PLUGIN_SOURCE = ROOT / "plugins/netspectra-heavykeeper/src/netspectra_heavykeeper"
PLUGIN_DOC = ROOT / "docs/plugins.md"


def imported_modules(tree: ast.AST, package: str = "") -> set[str]:
    """Every module an ``import``/``from … import`` names (relative ones resolved in ``package``)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                found.add(".".join([*base, node.module] if node.module else base))
            elif node.module is not None:
                found.add(node.module)
    return found


def netspectra_imports(names: set[str]) -> set[str]:
    return {name for name in names if name == "netspectra" or name.startswith("netspectra.")}


def test_the_heavykeeper_plugin_imports_only_the_sketch_api() -> None:
    sources = sorted(PLUGIN_SOURCE.rglob("*.py"))
    assert sources, f"no plugin source under {PLUGIN_SOURCE}"
    used: dict[str, set[str]] = {}
    for source in sources:
        names = netspectra_imports(imported_modules(ast.parse(source.read_text(), str(source))))
        used[source.name] = names
    assert set().union(*used.values()) == {"netspectra.sketch_api"}, used


def test_the_plugin_guide_imports_only_the_sketch_api() -> None:
    blocks = "\n".join(re.findall(r"```python\n(.*?)```", PLUGIN_DOC.read_text(), flags=re.DOTALL))
    named = set(re.findall(r"^\s*(?:from|import) (netspectra[\w.]*)", blocks, flags=re.MULTILINE))
    assert named == {"netspectra.sketch_api"}


def test_the_sketch_api_offers_what_the_plugin_imports() -> None:
    import netspectra.sketch_api as api

    wanted: set[str] = set()
    for source in PLUGIN_SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "netspectra.sketch_api":
                wanted.update(alias.name for alias in node.names)
    assert wanted <= set(api.__all__)
    assert all(hasattr(api, name) for name in api.__all__)


# --- the arrows: data flows capture → wire → bus → engine → storage → api, never back ---------

PACKAGE = ROOT / "netspectra"
#: Each layer may import the layers ranked below it (and its own package), never one at or above
#: it. The probe is a role fed by capture, wire and bus, ranked with the engine so neither imports
#: the other; synth (generated traffic with its truth) sits with capture; sketch_api, the
#: plugins' facade over engine.sketch, sits just above the engine so the engine never reaches it.
#: alerting reads the store's merged view through the query layer and the api shows its alerts, so
#: it sits between them: storage → alerting → api.
RANKS = {
    "model": 0,
    "capture": 1,
    "synth": 1,
    "wire": 2,
    "bus": 3,
    "engine": 4,
    "probe": 4,
    "sketch_api": 5,
    "storage": 6,
    "alerting": 7,
    "api": 8,
}
#: Usable by every layer; they themselves import only each other, the shared data types and the
#: wire contract's names that are config defaults (subjects, queue group).
SHARED = {"__init__", "config", "errors", "logs", "plugins", "numba_internals", "jit"}
SHARED_MAY_IMPORT = {"netspectra.model", "netspectra.wire.subjects"}
#: The composition root and the commands over it: they may import anything, nothing imports them.
TOP = {"__main__", "app", "cli", "analysis", "supervisor", "telemetry", "warmup", "aot"}
#: Modules inside a shared package that belong to the top: ``config.validate`` checks what every
#: layer will do with the settings (plugins, writers, listen addresses) for ``run`` and ``config
#: check``, so it may import any layer and nothing below the top may import it.
TOP_MODULES = {"netspectra.config.validate"}


def unit_of(module: str) -> str:
    """``netspectra.engine.sketch.group`` → ``engine``; ``netspectra`` itself → ``__init__``."""
    if any(module == top or module.startswith(top + ".") for top in TOP_MODULES):
        return "cli"  # ranked as the commands that use it
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> tuple[str, str]:
    """(module, the package its relative imports start from) of a file under netspectra/."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


def arrow_problem(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported`` (both netspectra modules), or None when it may."""
    source, target = unit_of(importer), unit_of(imported)
    if source == target or source in TOP:
        return None
    if target in TOP:
        return f"{importer} imports {imported}: only the top ({', '.join(sorted(TOP))}) imports the top"
    if source in SHARED:
        if target in SHARED or any(
            imported == ok or imported.startswith(ok + ".") for ok in SHARED_MAY_IMPORT
        ):
            return None
        return f"{importer} (shared by every layer) imports the layer {target!r}"
    if target in SHARED or RANKS[target] < RANKS[source]:
        return None
    return f"{importer} ({source}, rank {RANKS[source]}) imports {imported} ({target}, rank {RANKS[target]})"


def arrow_problems(tree: ast.AST, module: str, package: str | None = None) -> list[str]:
    problems = []
    package = module.rpartition(".")[0] if package is None else package
    for imported in sorted(netspectra_imports(imported_modules(tree, package))):
        problem = arrow_problem(module, imported)
        if problem is not None:
            problems.append(problem)
    return problems


def test_every_module_of_the_package_has_a_place_in_the_order() -> None:
    units = {unit_of(module_name(path)[0]) for path in PACKAGE.rglob("*.py")}
    assert units - set(RANKS) - SHARED - TOP == set()


def test_no_module_imports_a_layer_above_it() -> None:
    """Imports inside functions and under TYPE_CHECKING count too: a lazy import is still an arrow."""
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module, package = module_name(path)
        if module.startswith("netspectra.wire.generated"):
            continue  # generated code (proto/): imports only itself and betterproto2
        problems += arrow_problems(ast.parse(path.read_text(), str(path)), module, package)
    assert problems == []


def test_the_arrow_check_catches_an_arrow_running_back() -> None:
    cases = {
        ("netspectra.engine.engine", "from netspectra.storage.registry import build_writer"): True,
        ("netspectra.engine.engine", "from netspectra.probe.role import ProbeRole"): True,
        ("netspectra.engine.engine", "from netspectra.sketch_api import HitterKind"): True,
        ("netspectra.storage.rows", "from netspectra.api.service import QueryService"): True,
        ("netspectra.engine.exact.group", "from netspectra.engine.snapshot import Snapshot"): False,
        ("netspectra.model.keys", "from netspectra.capture.kernel import SKIP_REASONS"): True,
        ("netspectra.config.models", "from netspectra.bus import open_bus"): True,
        ("netspectra.api.role", "from netspectra.app import build_storage"): True,
        ("netspectra.alerting.readings", "from netspectra.storage.query import QueryStore"): False,
        ("netspectra.alerting.alerter", "from netspectra.api.service import QueryService"): True,
        ("netspectra.storage.query", "from netspectra.alerting.state import Alert"): True,
        ("netspectra.api.role", "from netspectra.alerting.alerter import Alerter"): False,
        ("netspectra.storage.query", "from .. import errors"): False,
        ("netspectra.storage.query", "from ..engine import engine"): False,
        ("netspectra.engine.engine", "from ..storage import registry"): True,
        ("netspectra.engine.sketch.group", "from ...storage.registry import build_writer"): True,
        ("netspectra.engine.sketch.group", "from . import registry"): False,
        ("netspectra.api.role", "from netspectra.storage.registry import open_query_store"): False,
        ("netspectra.engine.role", "from netspectra.wire.codec import decode_messages"): False,
        ("netspectra.app", "from netspectra.api.role import ApiRole"): False,
        ("netspectra.model.fields", "from netspectra.errors import ConfigError"): False,
        ("netspectra.config.validate", "from netspectra.storage.registry import WRITER_CLASSES"): False,
        ("netspectra.config.models", "from netspectra.wire.subjects import DEFAULT_SUBJECT"): False,
        ("netspectra.config.models", "from netspectra.wire.codec import encode_packets"): True,
        ("netspectra.config.models", "from netspectra.config.validate import validate"): True,
    }
    for (module, source), backwards in cases.items():
        assert bool(arrow_problems(ast.parse(source), module)) is backwards, (module, source)

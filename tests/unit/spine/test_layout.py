"""The layout's promises, read from the source with ast: what each module may import."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PLUGIN_SOURCE = ROOT / "plugins/netspectra-heavykeeper/src/netspectra_heavykeeper"
PLUGIN_DOC = ROOT / "docs/plugins.md"


def imported_modules(tree: ast.AST, module: str = "") -> set[str]:
    """Every module an ``import``/``from … import`` names (relative imports resolved against ``module``)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level]
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

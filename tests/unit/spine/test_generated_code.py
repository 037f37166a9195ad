"""The committed betterproto2 code must be exactly what proto/generate.sh makes from proto/."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _tree(folder: Path) -> dict[str, Path]:
    return {
        str(path.relative_to(folder)): path
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_committed_generated_code_matches_a_fresh_generation(tmp_path: Path) -> None:
    fresh = tmp_path / "generated"
    # The interpreter running the tests has the compiler and ruff next to it; PATH may not.
    environment = {**os.environ, "PYTHON": sys.executable}
    script = [str(ROOT / "proto" / "generate.sh"), str(fresh)]
    done = subprocess.run(script, capture_output=True, text=True, env=environment, timeout=300)
    assert done.returncode == 0, done.stderr
    committed = _tree(ROOT / "netspectra" / "wire" / "generated")
    regenerated = _tree(fresh)
    assert sorted(committed) == sorted(regenerated)
    stale = [name for name in committed if not filecmp.cmp(committed[name], regenerated[name], shallow=False)]
    assert stale == [], f"run proto/generate.sh: these differ from a fresh generation: {stale}"

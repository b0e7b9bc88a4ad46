"""Layering, one way only: frontends -> compiler -> targets; runtime imports none of them
(it must work on a device with only numpy and the TVM runtime). Checked from the source."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["frontends", "compiler", "targets"]  # each may import only those to its right
TOP_LEVEL_ORCHESTRATION = {"api", "cli", "bench"}  # edgec.api etc. sit above every layer


def imported_edgec_modules(path):
    """Top-level edgec subpackages/modules a file imports (relative or absolute)."""
    pkg = list(path.relative_to(ROOT).parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:  # relative: resolve against the package
            parts = pkg[:len(pkg) - node.level + 1] + (node.module.split(".") if node.module else [])
            found.update([parts[0]] if parts else [a.name for a in node.names])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "edgec":
            parts = node.module.split(".")[1:]
            found.update([parts[0]] if parts else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("edgec."))
    return found


@pytest.mark.parametrize("layer", LAYERS + ["runtime"])
def test_layer_imports_only_downward(layer):
    if layer == "runtime":
        forbidden = set(LAYERS) | TOP_LEVEL_ORCHESTRATION
    else:
        forbidden = set(LAYERS[:LAYERS.index(layer)]) | TOP_LEVEL_ORCHESTRATION
    bad = []
    for f in sorted((ROOT / layer).rglob("*.py")):
        hits = imported_edgec_modules(f) & forbidden
        bad += [f"{f.relative_to(ROOT)} imports edgec.{h}" for h in sorted(hits)]
    assert not bad, "\n".join(bad)


def test_the_check_sees_imports():
    assert {"compiler", "runtime", "targets"} <= imported_edgec_modules(ROOT / "api.py")
    assert "compiler" in imported_edgec_modules(ROOT / "frontends" / "onnx" / "importer.py")

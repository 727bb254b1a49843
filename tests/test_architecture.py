"""The layered house (docs/design.md): every module imports only from its own layer or below,
and no function-level import of a bigalign module hides a cycle.

The table below mirrors docs/design.md's; a new module must be placed in it (the test fails on
a module it does not know).  Parsing only (ast): nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bigalign"

#: layer number -> modules (dotted, relative to the package); a trailing ".*" takes a whole subpackage
LAYERS: dict[int, tuple[str, ...]] = {
    1: ("errors", "result", "_checks", "_version", "_numba.*"),
    2: ("io.*", "options", "engine", "checkpoint", "progress", "capture"),
    3: ("moments", "features", "gram", "linalg", "stats", "intervals", "grouped", "tiles"),
    4: ("metrics.*",),
    5: ("compare", "layer_stitching"),
    6: ("report", "cli", "demo", "__main__"),
}

#: modules allowed to defer imports of bigalign modules to the function that needs them, and why
DEFERRED_OK = {
    # the package root resolves its public names on first use (``import bigalign`` stays cheap)
    "__init__": "lazy public names",
    # the command line parses and answers --help without loading numpy, dask or zarr; each command
    # imports the modules it runs (top of the house: nothing imports cli, so this hides no cycle)
    "cli": "fast --help",
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def layer_of(name: str) -> int | None:
    if name == "__init__":
        return 7  # the package root re-exports everything
    for layer, members in LAYERS.items():
        for m in members:
            if name == m or (m.endswith(".*") and (name == m[:-2] or name.startswith(m[:-1]))):
                return layer
    return None


def _resolve(module: str, node: ast.ImportFrom) -> list[str]:
    """The bigalign modules an import statement reaches (relative to the package), or []."""
    if node.level == 0:
        if not (node.module or "").startswith("bigalign"):
            return []
        base = (node.module or "")[len("bigalign") :].lstrip(".")
    else:
        pkg = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
        if module == "__init__":
            pkg = []
        pkg = pkg[: len(pkg) - (node.level - 1)] if node.level > 1 else pkg
        base = ".".join([*pkg, *([node.module] if node.module else [])])
    out = []
    for alias in node.names:
        cand = f"{base}.{alias.name}" if base else alias.name
        out.append(cand if cand in MODULES else (base or "__init__"))  # ``from . import x`` may name a submodule
    return out


def _imports(module: str) -> list[tuple[ast.ImportFrom | ast.Import, bool]]:
    """(import node, inside a function) for every import of the module."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: list[tuple[ast.ImportFrom | ast.Import, bool]] = []

    def visit(node: ast.AST, in_func: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, in_func))
            visit(child, in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


def test_every_module_has_a_layer():
    unknown = [m for m in MODULES if layer_of(m) is None]
    assert not unknown, f"modules missing from the layer table (tests/test_architecture.py, docs/design.md): {unknown}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_function_level_imports_of_bigalign(module):
    if module in DEFERRED_OK:
        return
    bad = []
    for node, in_func in _imports(module):
        if not in_func:
            continue
        if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("bigalign")):
            bad.append(f"line {node.lineno}: from {'.' * node.level}{node.module or ''} import ...")
        elif isinstance(node, ast.Import) and any(a.name.startswith("bigalign") for a in node.names):
            bad.append(f"line {node.lineno}: import {', '.join(a.name for a in node.names)}")
    assert not bad, f"bigalign.{module} imports bigalign modules inside functions (move them to the top): {bad}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module):
    own = layer_of(module)
    assert own is not None
    up = []
    for node, _ in _imports(module):
        if not isinstance(node, ast.ImportFrom):
            continue
        for target in _resolve(module, node):
            if target == "__init__" or target == "":
                up.append(f"line {node.lineno}: the package root")
                continue
            tl = layer_of(target)
            if tl is not None and tl > own:
                up.append(f"line {node.lineno}: {target} (layer {tl})")
    if module == "__init__":
        return
    assert not up, f"bigalign.{module} (layer {own}) imports from a higher layer: {up}"


def test_the_checker_sees_a_violation(tmp_path):
    """The checks above are not vacuous: they resolve relative imports to modules and layers."""
    assert layer_of("metrics.kernel") == 4 and layer_of("stats") == 3 and layer_of("_numba.tiles") == 1
    node = ast.parse("from ..compare import compare_layers").body[0]
    assert _resolve("metrics.kernel", node) == ["compare"]
    node = ast.parse("from .metrics._common import check_choice").body[0]
    assert _resolve("stats", node) == ["metrics._common"]
    assert layer_of(_resolve("stats", node)[0]) > layer_of("stats")
    node = ast.parse("from . import __version__").body[0]
    assert _resolve("checkpoint", node) == ["__init__"]  # the package root: above every layer

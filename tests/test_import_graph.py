"""The package's import graph: every ``import`` statement of every module (at module level, inside functions,
under ``TYPE_CHECKING``) is an edge, and importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``.
No module may reach itself again, and no module may import a layer above its own (docs/ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "wsi_amf"


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: dict[str, Path]) -> list[str]:
    """The package modules an import statement loads (the module named, or ``from X import name`` when
    ``X.name`` is a module)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else prefix for a in node.names]
    out = []
    for name in names:
        while name and name not in known and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in known:
            out.append(name)
    return out


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package modules its import statements run (the packages above each target included; a
    module's own enclosing packages are running already when it is imported, so they count only when named)."""
    known = modules(root)
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(module, is_package, node, known):
                edges.add(target)  # named: counts even when it encloses this module
                parts = target.split(".")
                for i in range(1, len(parts)):
                    parent = ".".join(parts[:i])
                    if parent in known and not (module + ".").startswith(parent + "."):
                        edges.add(parent)
        edges.discard(module)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 50  # the walk found the package
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(
        " <-> ".join(c) + " (" + ", ".join(f"{m} -> {sorted(graph[m] & set(c))}" for m in c) + ")" for c in found)


def test_the_walk_sees_function_level_type_only_and_package_imports(tmp_path: Path) -> None:
    """A cycle hidden in a function, under TYPE_CHECKING or through a package's __init__ is found."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .top import thing\n")
    (pkg / "top.py").write_text("def thing():\n    from .sub import leaf\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "leaf.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import top\n")
    (pkg / "sub" / "other.py").write_text("from pkg import thing\n")
    graph = import_graph(pkg)
    assert graph["pkg.top"] == {"pkg.sub", "pkg.sub.leaf"}
    assert graph["pkg.sub.leaf"] == {"pkg.top"}
    assert graph["pkg.sub.other"] == {"pkg"}
    assert cycles(graph) == [["pkg.sub.leaf", "pkg.top"]]
    (pkg / "sub" / "leaf.py").write_text("X = 1\n")
    assert cycles(import_graph(pkg)) == []


@pytest.mark.parametrize("module", ["wsi_amf._version", "wsi_amf.choices", "wsi_amf.errors"])
def test_the_lowest_modules_import_nothing_of_the_package(module: str) -> None:
    assert import_graph()[module] == set()


#: The layers, lowest first (docs/ARCHITECTURE.md): a module may import its own layer and those below it.
LAYERS: dict[str, tuple[str, ...]] = {
    "base": ("wsi_amf._version", "wsi_amf.choices", "wsi_amf.errors", "wsi_amf.text"),
    "helpers": ("wsi_amf.files", "wsi_amf.stats", "wsi_amf.polygons"),
    "inputs": ("wsi_amf.slide", "wsi_amf.points", "wsi_amf.roi", "wsi_amf.stain", "wsi_amf.synthetic", "wsi_amf.cache",
               "wsi_amf.datasets"),
    "model": ("wsi_amf.precision", "wsi_amf.bundle", "wsi_amf.preprocess", "wsi_amf.onnx_graphs", "wsi_amf.ensemble",
              "wsi_amf.calibration", "wsi_amf.quantify"),
    "results": ("wsi_amf.hotspot", "wsi_amf.results", "wsi_amf.exports", "wsi_amf.outputs", "wsi_amf.options"),
    "report": ("wsi_amf.report",),
    "pipelines": ("wsi_amf.stream", "wsi_amf.screen", "wsi_amf.inference", "wsi_amf.demo"),
    "orchestration": ("wsi_amf.batch", "wsi_amf.training"),
    "interface": ("wsi_amf.cli", "wsi_amf.__main__", "wsi_amf"),
}


def layer_of(module: str) -> int:
    """The index of the module's layer: the longest entry that names it or a package above it (the root
    package ``wsi_amf`` names only itself)."""
    best = None
    for rank, prefixes in enumerate(LAYERS.values()):
        for prefix in prefixes:
            below = "." in prefix and module.startswith(prefix + ".")
            if (module == prefix or below) and (best is None or len(prefix) > len(best[1])):
                best = (rank, prefix)
    if best is None:
        raise KeyError(module)
    return best[0]


def test_every_module_has_a_layer() -> None:
    with pytest.raises(KeyError):
        layer_of("wsi_amf.a_module_in_no_layer")  # the root package's entry does not cover its modules
    missing = [m for m in import_graph() if not _has_layer(m)]
    assert not missing, f"modules in no layer of LAYERS (add them, and to docs/ARCHITECTURE.md): {missing}"


def _has_layer(module: str) -> bool:
    try:
        layer_of(module)
    except KeyError:
        return False
    return True


def test_no_module_imports_a_layer_above_its_own() -> None:
    names = list(LAYERS)
    upward = [f"{m} ({names[layer_of(m)]}) -> {t} ({names[layer_of(t)]})"
              for m, targets in import_graph().items() for t in sorted(targets) if layer_of(t) > layer_of(m)]
    assert not upward, "imports of a higher layer: " + "; ".join(upward)

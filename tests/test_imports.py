"""Architecture: the packages of ``src/kdforge`` import each other downward only, never in a cycle.

Every ``import`` statement of every module is read from its source (module level, inside
functions and under ``TYPE_CHECKING`` alike: a late import is still a dependency). Each
module belongs to a unit (the sub-package below ``kdforge``, or the top-level module) and
each unit to a layer; a unit may import its own layer or any layer below it.

The layers follow the code: the engine (``engine/run.py`` builds a registered method and
``engine/trainer.py`` runs it through the ``Method`` contract) sits above the methods, and
nothing in ``methods/`` imports the engine.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

import kdforge

SRC = Path(kdforge.__file__).parent

#: lowest first; a unit may import units of its own layer or of a lower one
LAYERS: list[set[str]] = [
    {"errors", "io", "config", "registry", "_registry_scan"},
    {"losses", "tensor"},
    {"models", "data", "layers"},
    {"methods"},
    {"engine"},
    {"experiments", "report"},
    {"cli", "quickstart", "distill", "distill_config", "distill_teacher"},
]
LAYER_OF = {unit: level for level, units in enumerate(LAYERS) for unit in units}
ROOT = "kdforge"  # the package's __init__: re-exports only, exempt from layering


def module_name(path: Path) -> str:
    """Dotted module name of a source file under :data:`SRC`."""
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Every ``kdforge...`` module named by an import statement of ``path`` (relative ones resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            # `from kdforge import io` imports the module kdforge.io; `from kdforge.io import x`, kdforge.io
            submodules = {f"{target}.{alias.name}" for alias in node.names}
            found.update(m for m in submodules if existing(m))
            if not all(existing(m) for m in submodules):
                found.add(target)
    return {m for m in found if m == ROOT or m.startswith(ROOT + ".")}


def unit_of(module: str) -> str:
    """``kdforge.engine.run`` -> ``engine``; ``kdforge.io`` -> ``io``; ``kdforge`` -> ``kdforge``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def existing(module: str) -> bool:
    """Whether ``module`` is a module or package of the source tree (not an attribute)."""
    if module == ROOT:
        return True
    rel = SRC.joinpath(*module.split(".")[1:])
    return rel.with_suffix(".py").is_file() or (rel / "__init__.py").is_file()


@functools.cache
def unit_graph() -> dict[str, dict[str, list[str]]]:
    """``{unit: {imported unit: [importing module -> imported module, ...]}}`` over all sources."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(SRC.rglob("*.py")):
        src = module_name(path)
        edges = graph.setdefault(unit_of(src), {})
        for target in sorted(imported_modules(path)):
            if unit_of(target) == unit_of(src):
                continue
            edges.setdefault(unit_of(target), []).append(f"{src} -> {target}")
    return graph


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Strongly connected components with more than one unit (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_walker_reads_late_relative_and_from_imports(tmp_path):
    """The walker sees imports inside functions, ``from pkg import module`` and relative ones."""
    path = SRC / "models" / "hooks.py"
    assert "kdforge.errors" in imported_modules(path)
    probe = SRC / "models" / "__init__.py"
    mods = imported_modules(probe)
    assert {"kdforge.io", "kdforge.models.hf", "kdforge.registry"} <= mods  # late import included
    graph = {"a": {"b": []}, "b": {"c": []}, "c": {"a": []}, "d": {"a": []}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b": []}, "b": {}}) == []


def test_no_import_cycle_between_packages():
    graph = unit_graph()
    found = cycles(graph)
    detail = [
        f"cycle {' <-> '.join(c)}: "
        + "; ".join(e for u in c for v in c for e in graph.get(u, {}).get(v, [])[:2])
        for c in found
    ]
    assert not found, "\n".join(detail)


def test_every_unit_has_a_layer():
    units = {unit_of(module_name(p)) for p in SRC.rglob("*.py")} - {ROOT}
    missing = sorted(units - set(LAYER_OF))
    assert not missing, f"add {missing} to LAYERS in {__file__}"


@pytest.mark.parametrize("unit", sorted(LAYER_OF))
def test_imports_point_down(unit):
    upward = [
        edge
        for target, edges in unit_graph().get(unit, {}).items()
        if target in LAYER_OF and LAYER_OF[target] > LAYER_OF[unit]
        for edge in edges
    ]
    assert not upward, f"'{unit}' imports from a higher layer: {upward}"

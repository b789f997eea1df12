"""What the registries will hold, read from source without importing it (so without torch).

``kdforge list`` and ``kdforge --help`` should answer in a fraction of a second, but
every module that registers a method, model or data set imports torch (seconds).
This module parses the packages the registry imports on first use
(:data:`kdforge.registry._PLUGIN_MODULES`) with :mod:`ast` and collects every
``@register_method("name")`` / ``@register_model(...)`` / ``@register_dataset(...)``
(or ``@METHODS.register(...)``) decorator with a literal name on a module-level
function or class, with the first line of the decorated object's docstring.

A test checks that this listing equals the imported registries name for name and
line for line, so a registration this scan cannot read (a computed name) fails
there instead of silently missing from ``kdforge list``.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from kdforge import registry

#: decorator name -> registry kind (the keys of :func:`describe_registered`)
_DECORATORS = {
    "register_method": "methods",
    "register_model": "models",
    "register_dataset": "datasets",
    "METHODS.register": "methods",
    "MODELS.register": "models",
    "DATASETS.register": "datasets",
}
KINDS = ("methods", "models", "datasets")


def _decorator_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return f"{node.value.id}.{node.attr}"
    return None


def _first_line(doc: str | None) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0] if lines else ""


def scan_file(path: Path) -> list[tuple[str, str, str]]:
    """``(kind, name, first docstring line)`` for each literal registration in one file."""
    found: list[tuple[str, str, str]] = []
    source = path.read_text(encoding="utf-8")
    if "register" not in source:  # most files: skip parsing
        return found
    for node in ast.parse(source, str(path)).body:  # registrations are module-level
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        for deco in node.decorator_list:
            if not (isinstance(deco, ast.Call) and deco.args):
                continue
            kind = _DECORATORS.get(_decorator_name(deco.func) or "")
            arg = deco.args[0]
            if kind and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append((kind, arg.value, _first_line(ast.get_docstring(node))))
    return found


def _package_files(module: str) -> list[Path]:
    spec = importlib.util.find_spec(module)  # imports parent packages only (kdforge: no torch)
    if spec is None or spec.origin is None:
        return []
    origin = Path(spec.origin)
    if origin.name != "__init__.py":
        return [origin]
    return sorted(origin.parent.rglob("*.py"))


def scan_registrations() -> dict[str, dict[str, str]]:
    """``{kind: {name: first docstring line}}`` of the built-in registrations, from source."""
    out: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
    for module in registry._PLUGIN_MODULES:
        for path in _package_files(module):
            for kind, name, doc in scan_file(path):
                out[kind][name] = doc
    return out


def describe_registered() -> dict[str, dict[str, str]]:
    """Built-in registrations (scanned) plus anything already registered in this process.

    Plugins imported before the call (e.g. by a ``--plugin`` option) appear too, with
    their live docstrings; nothing is imported here.
    """
    out = scan_registrations()
    live = {"methods": registry.METHODS, "models": registry.MODELS, "datasets": registry.DATASETS}
    for kind, reg in live.items():
        for name, obj in reg._items.items():
            out[kind][name] = _first_line(getattr(obj, "__doc__", None))
    return {kind: dict(sorted(entries.items())) for kind, entries in out.items()}

"""Name -> constructor registries for methods, models and datasets, and the plugins that extend them.

Everything registered is covered by the parametrized tests in ``tests/``: a new
entry gets forward/backward/state-dict round-trip tests for free.

A user's own code reaches every command as a *plugin*: a Python file or module whose
``@register_dataset`` / ``@register_model`` / ``@register_method`` run when it is imported.
Plugins come from ``kdforge --plugin FILE_OR_MODULE`` (:func:`load_plugin`) and from
installed packages that declare an entry point in the group ``kdforge.plugins``
(loaded with the built-in entries on first registry access).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from kdforge.errors import KdforgeError, unknown

T = TypeVar("T")

# Modules imported on first registry access so that registration side effects run.
_PLUGIN_MODULES = (
    "kdforge.data",
    "kdforge.models",
    "kdforge.methods",
)


class Registry:
    """A named collection of constructors with helpful lookup errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Any] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` (default: its ``__name__``)."""

        def deco(obj: T) -> T:
            key = name or obj.__name__  # type: ignore[attr-defined]
            if key in self._items and self._items[key] is not obj:
                where = getattr(self._items[key], "__module__", "?")
                raise KdforgeError(
                    f"{self.kind} '{key}' is registered twice (already by {where})",
                    f"give the new {self.kind} another name",
                )
            self._items[key] = obj
            return obj

        return deco

    def get(self, name: str) -> Any:
        """Return the entry called ``name``; unknown names list the nearest valid ones."""
        _load_plugins()
        if name not in self._items:
            raise unknown(self.kind, name, self._items, f"run `kdforge list` to see every {self.kind}")
        return self._items[name]

    def names(self) -> list[str]:
        """Sorted names of every registered entry."""
        _load_plugins()
        return sorted(self._items)

    def items(self) -> list[tuple[str, Any]]:
        """Sorted (name, entry) pairs."""
        _load_plugins()
        return sorted(self._items.items())


METHODS = Registry("method")
MODELS = Registry("model")
DATASETS = Registry("dataset")

register_method = METHODS.register
register_model = MODELS.register
register_dataset = DATASETS.register

#: Entry-point group through which installed packages add methods, models and data sets.
PLUGIN_GROUP = "kdforge.plugins"

_loaded = False
_user_plugins: dict[str, ModuleType] = {}


def _load_plugins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _PLUGIN_MODULES:
        importlib.import_module(mod)
    load_entry_point_plugins()


def load_entry_point_plugins() -> list[str]:
    """Load every installed ``kdforge.plugins`` entry point; returns their names.

    An entry point names a module (importing it registers its entries) or a function,
    which is called without arguments. Packages declare one in ``pyproject.toml``::

        [project.entry-points."kdforge.plugins"]
        my_data = "my_package.kdforge_plugin"

    Raises:
        KdforgeError: an entry point fails to load (naming it and its package).
    """
    names = []
    for entry in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        package = entry.dist.name if entry.dist is not None else "?"
        try:
            obj = entry.load()
            if callable(obj) and not isinstance(obj, ModuleType):
                obj()
        except KdforgeError as e:
            raise KdforgeError(
                f"installed plugin '{entry.name}' (package {package}): {e.cause}", e.fix
            ) from None
        except Exception as e:
            raise KdforgeError(
                f"installed plugin '{entry.name}' ({entry.value}, package {package}) failed to load: "
                f"{type(e).__name__}: {e}",
                f"fix or uninstall the package {package}",
            ) from None
        names.append(entry.name)
    return names


def load_plugin(spec: str) -> ModuleType:
    """Import a user's plugin so that its ``@register_*`` entries exist: a ``.py`` file or a module name.

    A path (anything ending in ``.py`` or naming an existing file) is imported as a
    module of its own; any other string is imported by name (it must be on
    ``sys.path``, e.g. an installed package or a folder in ``PYTHONPATH``). Loading the
    same plugin twice does nothing the second time. The built-in entries are loaded
    first, so a plugin reusing a built-in name fails with that name.

    Raises:
        KdforgeError: the file or module does not exist, or importing it fails.
    """
    _load_plugins()
    path = Path(spec).expanduser()
    is_file = spec.endswith(".py") or path.is_file()
    key = str(path.resolve()) if is_file else spec
    if key in _user_plugins:
        return _user_plugins[key]
    if is_file:
        module = _import_file(path, spec)
    else:
        try:
            module = importlib.import_module(spec)
        except ModuleNotFoundError as e:
            if e.name is None or not (spec == e.name or spec.startswith(e.name + ".")):
                raise _plugin_error(spec, e) from None
            raise KdforgeError(
                f"plugin '{spec}' is neither a file nor an importable module ({e})",
                "pass the path of a .py file, or install the module / add its folder to PYTHONPATH",
            ) from None
        except KdforgeError as e:
            raise KdforgeError(f"plugin '{spec}': {e.cause}", e.fix) from None
        except Exception as e:
            raise _plugin_error(spec, e) from None
    _user_plugins[key] = module
    return module


def load_plugins(specs: list[str] | tuple[str, ...]) -> list[ModuleType]:
    """:func:`load_plugin` for each of ``specs`` in order (``kdforge --plugin A --plugin B``)."""
    return [load_plugin(spec) for spec in specs]


def _plugin_error(spec: str, e: Exception) -> KdforgeError:
    return KdforgeError(
        f"plugin '{spec}' failed to import: {type(e).__name__}: {e}",
        f"fix the plugin (`python {spec}` shows the full traceback)"
        if spec.endswith(".py")
        else f"fix the plugin (`python -c 'import {spec}'` shows the full traceback)",
    )


def _import_file(path: Path, spec: str) -> ModuleType:
    if not path.is_file():
        raise KdforgeError(f"plugin file '{spec}' does not exist", "fix the path given to --plugin")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    name = f"kdforge_plugin_{path.stem.replace('-', '_')}_{digest}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise KdforgeError(f"plugin file '{spec}' cannot be imported as Python", "pass a .py file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # so that dataclasses and pickling inside the plugin work
    try:
        module_spec.loader.exec_module(module)
    except KdforgeError as e:
        del sys.modules[name]
        raise KdforgeError(f"plugin '{spec}': {e.cause}", e.fix) from None
    except Exception as e:
        del sys.modules[name]
        raise _plugin_error(spec, e) from None
    return module


def list_methods() -> list[str]:
    """Names of all registered distillation methods."""
    return METHODS.names()


def list_models() -> list[str]:
    """Names of all registered model builders."""
    return MODELS.names()


def list_datasets() -> list[str]:
    """Names of all registered datasets."""
    return DATASETS.names()

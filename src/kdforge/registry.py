"""Name -> constructor registries for methods, models and datasets.

Everything registered is covered by the parametrized tests in ``tests/``: a new
entry gets forward/backward/state-dict round-trip tests for free.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from kdforge.errors import unknown

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
                raise ValueError(f"{self.kind} '{key}' is registered twice")
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

_loaded = False


def _load_plugins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _PLUGIN_MODULES:
        importlib.import_module(mod)


def list_methods() -> list[str]:
    """Names of all registered distillation methods."""
    return METHODS.names()


def list_models() -> list[str]:
    """Names of all registered model builders."""
    return MODELS.names()


def list_datasets() -> list[str]:
    """Names of all registered datasets."""
    return DATASETS.names()

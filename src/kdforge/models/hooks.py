"""Capture intermediate features by module path (``blocks.1``, ``encoder.layer.3.output``)."""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn

from kdforge.errors import KdforgeError, nearest


def get_module(model: nn.Module, path: str, role: str = "model") -> nn.Module:
    """Return the submodule at ``path``; an unknown path lists the nearest valid names."""
    modules = dict(model.named_modules())
    if path not in modules:
        names = [n for n in modules if n]
        raise KdforgeError(
            f"{role} has no module '{path}' (nearest: {', '.join(nearest(path, names))})",
            f"choose a path from the {role}'s named_modules(), e.g. {', '.join(names[:6])} ...",
        )
    return modules[path]


class FeatureHooks:
    """Forward hooks that store the output of each named module on every forward.

    Usage::

        hooks = FeatureHooks(model, ["blocks.0"], role="student")
        model(x)
        feat = hooks["blocks.0"]
    """

    def __init__(self, model: nn.Module, paths: Iterable[str], role: str = "model") -> None:
        self.features: dict[str, Tensor] = {}
        self._handles = []
        for path in paths:
            module = get_module(model, path, role)
            self._handles.append(module.register_forward_hook(self._make_hook(path)))

    def _make_hook(self, path: str):
        def hook(_module: nn.Module, _inputs: tuple, output: Tensor | tuple) -> None:
            if isinstance(output, tuple):  # HF layers return tuples: hidden state first
                output = output[0]
            self.features[path] = output

        return hook

    def __getitem__(self, path: str) -> Tensor:
        return self.features[path]

    def clear(self) -> None:
        """Drop stored features (free memory between steps)."""
        self.features.clear()

    def remove(self) -> None:
        """Remove all hooks."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

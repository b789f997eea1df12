"""Reference models (registered by name), models by reference, and helpers to build / load them."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from torch import nn

from kdforge import io
from kdforge.errors import KdforgeError, nearest
from kdforge.models import bert_narrow, cnn, hf, mlp, text  # noqa: F401  (registers models)
from kdforge.models.mlp import count_parameters

__all__ = ["build_model", "count_parameters", "load_model"]


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, **kwargs: Any) -> nn.Module:
    """Build a registered model, checking ``kwargs`` against the builder's signature."""
    from kdforge.registry import MODELS

    builder = MODELS.get(name)
    params = inspect.signature(builder).parameters
    has_var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    valid = [k for k in params if k not in ("input_shape", "num_classes")]
    for k in kwargs:
        if k not in params and not has_var_kw:
            raise KdforgeError(
                f"model '{name}' has no option '{k}' (did you mean: {', '.join(nearest(k, valid))})",
                f"valid options for '{name}': {', '.join(valid)}",
            )
    try:
        return builder(input_shape=tuple(input_shape), num_classes=num_classes, **kwargs)
    except (TypeError, ValueError) as e:
        raise KdforgeError(f"cannot build model '{name}' with {kwargs}: {e}", "fix its kwargs") from None


def build_from_spec(spec: dict[str, Any]) -> nn.Module:
    """Build the architecture a saved spec (:func:`kdforge.io.model_spec`) describes, untrained."""
    return build_model(spec["model"], tuple(spec["input_shape"]), spec["num_classes"], **spec["kwargs"])


def load_model(path: str | Path) -> nn.Module:
    """Rebuild a model saved with :func:`kdforge.io.save_model` (e.g. a run's ``student``), no teacher needed.

    Args:
        path: ``runs/x/student``, ``runs/x/student.safetensors`` or ``runs/x/student.json``.
    """
    return io.load_model(path, build_from_spec)

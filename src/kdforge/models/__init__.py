"""Reference models (registered by name) and helpers to build / load them."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from kdforge.errors import KdforgeError, nearest
from kdforge.models import audio_teachers, bert_narrow, cnn, hf, mlp  # noqa: F401  (registers models)
from kdforge.models.mlp import count_parameters

__all__ = ["build_model", "count_parameters"]


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

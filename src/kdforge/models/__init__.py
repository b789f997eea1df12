"""Reference models (registered by name), models by reference, and helpers to build / load them."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from kdforge import io
from kdforge.errors import KdforgeError
from kdforge.models import audio_teachers, bert_narrow, cnn, headed, hf, mlp, text  # noqa: F401  (registers models)
from kdforge.models.mlp import count_parameters
from kdforge.models.reference import build_reference, call_builder, is_reference

__all__ = ["build_model", "check_num_classes", "count_parameters", "load_model"]


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, **kwargs: Any) -> nn.Module:
    """Build a registered model or a model by reference, checking ``kwargs`` against its builder.

    Args:
        name: a registered name (``kdforge list``) or a reference (``hf:DIR``,
            ``torchscript:FILE``, ``torchvision:ARCH``, ``timm:ARCH``, ``py:MODULE:FUNCTION``,
            ``FILE.py:FUNCTION``; see :mod:`kdforge.models.reference`).
        input_shape: shape of one example's input (``(1, 28, 28)``, ``(max_len,)``).
        num_classes: the data's classes (the width of the logits).
        **kwargs: the builder's options.
    """
    if is_reference(name):
        return build_reference(name, input_shape, num_classes, **kwargs)
    from kdforge.registry import MODELS

    return call_builder(name, MODELS.get(name), input_shape, num_classes, kwargs)


def _accepted_inputs(model: nn.Module, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
    """The ``inputs`` that ``model.forward`` names (all of them when it takes ``**kwargs``)."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # e.g. a TorchScript method
        return inputs
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return inputs
    return {k: v for k, v in inputs.items() if k in params} or inputs


def check_num_classes(model: nn.Module, inputs: dict[str, Tensor], num_classes: int, role: str) -> None:
    """Run ``model`` once on example ``inputs`` (eval mode, no gradient) and check its logits' width.

    Raises:
        KdforgeError: the model does not run on these inputs, does not return a logits tensor
            ``[batch, classes]``, or returns another number of classes than the data has.
    """
    inputs = _accepted_inputs(model, inputs)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(**inputs)
    except (TypeError, RuntimeError, ValueError) as e:
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in inputs.items())
        raise KdforgeError(
            f"the {role} does not run on a batch of this data ({shapes}): {type(e).__name__}: {e}",
            "its forward must take the batch inputs as keyword arguments (x for images; "
            "input_ids, attention_mask for text) and return logits",
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, Tensor) or out.dim() != 2:
        got = f"a tensor of shape {tuple(out.shape)}" if isinstance(out, Tensor) else type(out).__name__
        raise KdforgeError(
            f"the {role} returns {got}, not logits [batch, classes]",
            "make its forward return the logits tensor",
        )
    if out.shape[1] != num_classes:
        raise KdforgeError(
            f"the {role} outputs {out.shape[1]} classes but the data has {num_classes}",
            f"give the {role} a head for the data's {num_classes} classes (e.g. hf: kwargs head: new, then "
            f"train it), or use a {role} trained on this data",
        )


def build_from_spec(spec: dict[str, Any]) -> nn.Module:
    """Build the architecture a saved spec (:func:`kdforge.io.model_spec`) describes, untrained."""
    return build_model(spec["model"], tuple(spec["input_shape"]), spec["num_classes"], **spec["kwargs"])


def load_model(path: str | Path) -> nn.Module:
    """Rebuild a model saved with :func:`kdforge.io.save_model` (e.g. a run's ``student``), no teacher needed.

    Args:
        path: ``runs/x/student``, ``runs/x/student.safetensors`` or ``runs/x/student.json``.
    """
    return io.load_model(path, build_from_spec)

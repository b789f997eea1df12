"""A test teacher whose round-off depends on batch composition (shared with a resume subprocess)."""

from __future__ import annotations

import math

from torch import Tensor

from kdforge.models.mlp import MLP
from kdforge.registry import MODELS


class BatchSensitiveMLP(MLP):
    """An MLP whose logits' round-off depends on the batch they are computed in.

    GPU kernels (and padding trimmed per batch) behave like this; the CPU MLP does not, so
    this teacher makes batch-composition effects visible on the CPU.
    """

    def forward(self, x: Tensor) -> Tensor:
        out = super().forward(x)
        shift = 1e3 * out.detach().mean()
        return (out + shift) - shift


def register_batch_sensitive() -> None:
    """Register ``mlp_batch_sensitive`` (an MLP checkpoint loads into it)."""

    def build(input_shape, num_classes, hidden=(128,)):
        return BatchSensitiveMLP(math.prod(input_shape), num_classes, tuple(hidden))

    MODELS._items.setdefault("mlp_batch_sensitive", build)

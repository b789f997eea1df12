"""Multi-layer perceptrons with named blocks (``blocks.0``, ``blocks.1``, ..., ``head``)."""

from __future__ import annotations

import math

from torch import Tensor, nn

from kdforge.registry import register_model


class MLP(nn.Module):
    """Flatten -> [Linear, ReLU, Dropout] x len(hidden) -> Linear head.

    Feature paths: ``blocks.{i}`` (after each hidden block's activation), ``head``.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: tuple[int, ...] = (256,),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        widths = [in_features, *hidden]
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout))
            for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = x.flatten(1)
        for block in self.blocks:
            h = block(h)
        return self.head(h)


@register_model("mlp")
def mlp(
    input_shape: tuple[int, ...],
    num_classes: int,
    hidden: list[int] | tuple[int, ...] = (256,),
    dropout: float = 0.0,
) -> MLP:
    """MLP classifier for any input shape (flattened)."""
    return MLP(math.prod(input_shape), num_classes, tuple(hidden), dropout)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)

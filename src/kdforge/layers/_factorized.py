"""Shared base of the over-parameterized linear layers (MPO, SVD): reversible to ``nn.Linear``."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdforge.errors import KdforgeError

FORWARD_MODES = ("auto", "contract", "sequential")


class FactorizedLinear(nn.Module):
    """A linear map ``y = x W^T + b`` whose ``W`` is stored as trainable factors.

    Subclasses implement :meth:`weight_matrix` (contract the factors to ``W``),
    :meth:`sequential` (apply the factors to ``x`` one by one) and the two FLOP
    estimates; ``forward_mode="auto"`` picks the cheaper path per call from the
    number of input rows.
    """

    kind: ClassVar[str] = "factorized"

    def __init__(self, in_features: int, out_features: int, bias: Tensor | None, forward_mode: str) -> None:
        super().__init__()
        if forward_mode not in FORWARD_MODES:
            raise KdforgeError(
                f"unknown forward mode '{forward_mode}'", f"use one of {', '.join(FORWARD_MODES)}"
            )
        self.in_features = in_features
        self.out_features = out_features
        self.forward_mode = forward_mode
        self.bias = nn.Parameter(bias.detach().clone()) if bias is not None else None

    # -------------------------------------------------------------- subclass API
    def weight_matrix(self) -> Tensor:
        """The ``(out_features, in_features)`` weight contracted from the factors (differentiable)."""
        raise NotImplementedError

    def sequential(self, x: Tensor) -> Tensor:
        """``x W^T`` for ``x`` of shape ``(B, in_features)`` without forming ``W``."""
        raise NotImplementedError

    def contract_flops(self, rows: int) -> int:
        """Multiply-adds of contracting ``W`` then ``F.linear`` on ``rows`` inputs."""
        raise NotImplementedError

    def sequential_flops(self, rows: int) -> int:
        """Multiply-adds of :meth:`sequential` on ``rows`` inputs."""
        raise NotImplementedError

    # -------------------------------------------------------------- shared
    def choose_mode(self, rows: int) -> str:
        """The forward path used for ``rows`` input rows (``auto``: fewer multiply-adds)."""
        if self.forward_mode != "auto":
            return self.forward_mode
        return "contract" if self.contract_flops(rows) <= self.sequential_flops(rows) else "sequential"

    def forward(self, x: Tensor) -> Tensor:
        rows = x.numel() // self.in_features
        if self.choose_mode(rows) == "contract":
            return F.linear(x, self.weight_matrix(), self.bias)
        y = self.sequential(x.reshape(rows, self.in_features)).reshape(*x.shape[:-1], self.out_features)
        return y + self.bias if self.bias is not None else y

    @torch.no_grad()
    def to_linear(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing the same map (same dtype and device)."""
        w = self.weight_matrix()
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        lin = lin.to(device=w.device, dtype=w.dtype)
        lin.weight.copy_(w)
        if self.bias is not None:
            lin.bias.copy_(self.bias)
        return lin

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, mode={self.forward_mode}"

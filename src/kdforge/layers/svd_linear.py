"""SVD over-parameterization baseline: ``W = U diag(s) V^T`` with ``U``, ``s``, ``V`` all trainable."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kdforge.layers._factorized import FactorizedLinear


class SVDLinear(FactorizedLinear):
    """Linear layer stored as its full (untruncated) SVD, every factor trainable.

    With ``r = min(in, out)`` it has ``r * (in + out + 1)`` weight parameters,
    more than ``in * out``: the baseline over-parameterization the OPDF paper
    compares MPO against.
    """

    kind = "svd"

    def __init__(
        self, U: Tensor, s: Tensor, V: Tensor, bias: Tensor | None = None, forward_mode: str = "auto"
    ):
        super().__init__(V.shape[0], U.shape[0], bias, forward_mode)
        self.U = nn.Parameter(U.detach().clone())
        self.s = nn.Parameter(s.detach().clone())
        self.V = nn.Parameter(V.detach().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int | None = None, forward_mode: str = "auto") -> SVDLinear:
        """Decompose ``linear.weight`` (exact unless ``rank`` < ``min(in, out)``)."""
        w = linear.weight.detach()
        U, s, Vh = torch.linalg.svd(w, full_matrices=False)
        r = rank or s.numel()
        return cls(U[:, :r], s[:r], Vh[:r].T, linear.bias, forward_mode)

    def weight_matrix(self) -> Tensor:
        return (self.U * self.s) @ self.V.T

    def sequential(self, x: Tensor) -> Tensor:
        return ((x @ self.V) * self.s) @ self.U.T

    def contract_flops(self, rows: int) -> int:
        r = self.s.numel()
        return self.out_features * self.in_features * (r + rows)

    def sequential_flops(self, rows: int) -> int:
        return rows * self.s.numel() * (self.in_features + self.out_features)

"""MPO linear layer: the weight is a chain of trainable local tensors (Gao et al.; Zhan et al. 2024)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from kdforge.layers._factorized import FactorizedLinear
from kdforge.tensor.mpo import MPO, contraction_plan, mpo_contract, mpo_decompose, propose_factorization


class MPOLinear(FactorizedLinear):
    """``y = x W^T + b`` with ``W (out, in)`` stored as MPO cores ``(d_{k-1}, i_k, j_k, d_k)``.

    Row factors ``i_k`` split ``out_features``, column factors ``j_k`` split
    ``in_features``. Built untruncated from a dense layer, it computes exactly
    the same map but has more trainable parameters (the over-parameterization).

    Attributes:
        cores: the local tensors (``cores.{k}`` in the state dict).
        center: index of the central tensor; the others are the auxiliary tensors.
    """

    kind = "mpo"

    def __init__(
        self,
        cores: list[Tensor],
        row_factors: tuple[int, ...],
        col_factors: tuple[int, ...],
        bias: Tensor | None = None,
        forward_mode: str = "auto",
    ) -> None:
        super().__init__(math.prod(col_factors), math.prod(row_factors), bias, forward_mode)
        self.cores = nn.ParameterList(nn.Parameter(c.detach().clone()) for c in cores)
        self.row_factors = tuple(row_factors)
        self.col_factors = tuple(col_factors)
        self.center = len(cores) // 2

    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        row_factors: list[int] | None = None,
        col_factors: list[int] | None = None,
        n: int = 5,
        max_bond: int | None = None,
        energy: float | None = None,
        forward_mode: str = "auto",
    ) -> MPOLinear:
        """Decompose ``linear.weight``; factors default to :func:`propose_factorization` with ``n``.

        Raises:
            KdforgeError: if the factor products do not match the layer's shape.
        """
        out_f, in_f = linear.weight.shape
        rf = list(row_factors) if row_factors is not None else propose_factorization(out_f, n)
        cf = list(col_factors) if col_factors is not None else propose_factorization(in_f, len(rf))
        mpo = mpo_decompose(linear.weight.detach(), rf, cf, max_bond=max_bond, energy=energy)
        return cls(mpo.cores, mpo.row_factors, mpo.col_factors, linear.bias, forward_mode)

    def to_mpo(self) -> MPO:
        """The current cores as an :class:`~kdforge.tensor.mpo.MPO` (sharing storage)."""
        return MPO(list(self.cores), self.row_factors, self.col_factors)

    def auxiliary(self) -> dict[int, Tensor]:
        """The auxiliary (non-central) tensors by index."""
        return {k: c for k, c in enumerate(self.cores) if k != self.center}

    def weight_matrix(self) -> Tensor:
        return mpo_contract(list(self.cores))

    def sequential(self, x: Tensor) -> Tensor:
        rows = x.shape[0]
        rest = self.in_features
        s = x.reshape(rows, 1, 1, rest)
        for core in self.cores:
            _, i, j, e = core.shape
            b, o, d, _ = s.shape
            rest //= j
            s = torch.einsum("bodjr,dije->boier", s.reshape(b, o, d, j, rest), core).reshape(
                b, o * i, e, rest
            )
        return s.reshape(rows, self.out_features)

    def contract_flops(self, rows: int) -> int:
        return (
            contraction_plan([tuple(c.shape) for c in self.cores])[0]
            + rows * self.in_features * self.out_features
        )

    def sequential_flops(self, rows: int) -> int:
        o, rest, total = 1, self.in_features, 0
        for core in self.cores:
            d, i, j, e = core.shape
            rest //= j
            total += rows * o * d * j * rest * i * e
            o *= i
        return total

    def extra_repr(self) -> str:
        shapes = ", ".join(str(tuple(c.shape)) for c in self.cores)
        return f"{super().extra_repr()}, cores=[{shapes}], center={self.center}"

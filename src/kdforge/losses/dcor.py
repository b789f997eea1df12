"""Distance-correlation loss (EAsT: Ding & Lerch, ISMIR 2023; EC: arXiv 2402.06761).

For a batch of ``N`` examples with features ``x_i`` (student, dimension ``C``)
and ``y_i`` (teacher, dimension ``D``; ``C`` and ``D`` may differ):

.. math::

    a_{ij} = \\sqrt{\\lVert x_i - x_j \\rVert^2 + \\epsilon}, \\quad
    A_{ij} = a_{ij} - \\bar a_{i\\cdot} - \\bar a_{\\cdot j} + \\bar a_{\\cdot\\cdot}

(double centring; ``B`` likewise from ``y``), then

.. math::

    r = \\frac{\\operatorname{mean}(A \\odot B)}
             {\\sqrt{\\operatorname{mean}(A \\odot A)\\,\\operatorname{mean}(B \\odot B) + \\epsilon}},
    \\qquad L_{dCor} = 1 - r

``r`` is the (V-statistic) squared distance correlation of Székely, Rizzo &
Bakirov (2007), in [0, 1]. It is invariant to rotations, translations and
(global) scaling of either feature set (exactly up to the ``sqrt(eps)`` put on
zero distances), so no regressor is needed. Each batch is centred before its
distances are computed, so float32 keeps its precision on features far from the
origin (translation invariance makes this exact). On independent features it is near
0, biased upward by ``O(1/N)`` (V-statistic). For
sequences ``[N, T, C]`` the loss is computed per time step and averaged.

Memory is ``O(N^2)`` per time step (two ``N x N`` matrices plus autograd
buffers: about ``6 * N^2 * 4`` bytes in float32, ~100 MB at ``N = 2048``); keep
the batch below a few thousand examples. ``N < 3`` is rejected: with 1 example
the centred matrices are 0, with 2 the correlation is always 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kdforge.errors import KdforgeError

MAX_BATCH = 8192  # O(N^2) memory: 8192^2 * 4 B * ~6 buffers ~ 1.6 GB


def _centred_distances(x: Tensor, eps: float) -> Tensor:
    """Double-centred Euclidean distance matrices of ``x`` ``[T, N, C]`` -> ``[T, N, N]``.

    The batch is first centred (its mean subtracted per time step): distances do not change,
    but the Gram matrix of features far from the origin would lose float32 precision
    (``|x_i|^2 + |x_j|^2 - 2 x_i.x_j`` cancels catastrophically when offsets dwarf spreads).
    """
    x = x - x.mean(-2, keepdim=True)
    a = torch.sqrt(_gram_sq(x) + eps)
    return a - a.mean(-1, keepdim=True) - a.mean(-2, keepdim=True) + a.mean((-1, -2), keepdim=True)


def _gram_sq(x: Tensor) -> Tensor:
    """Squared pairwise distances via the Gram matrix (O(N^2) memory instead of O(N^2 C))."""
    norms = x.pow(2).sum(-1)
    sq = norms.unsqueeze(-1) + norms.unsqueeze(-2) - 2 * x @ x.transpose(-1, -2)
    return sq.clamp_min(0.0)


def distance_correlation(x: Tensor, y: Tensor, eps: float = 1e-9) -> Tensor:
    """Squared distance correlation ``r`` between two feature batches (averaged over time steps).

    Args:
        x: ``[N, C]`` or ``[N, T, C]`` (e.g. student features).
        y: ``[N, D]`` or ``[N, T, D]`` with the same ``N`` (and ``T``).
        eps: added under the square root of distances and of the normaliser.

    Returns:
        Scalar ``r`` in [0, 1] (mean over ``T`` for sequences).

    Raises:
        KdforgeError: batch size below 3 or above :data:`MAX_BATCH`, or mismatched shapes.
    """
    if x.dim() != y.dim() or x.dim() not in (2, 3):
        raise KdforgeError(
            f"dCor needs [N, C] or [N, T, C] for both inputs, got {tuple(x.shape)} and {tuple(y.shape)}",
            "pool or align the features first (time alignment: repeat the coarser, truncate)",
        )
    n = x.shape[0]
    if y.shape[0] != n or (x.dim() == 3 and x.shape[1] != y.shape[1]):
        raise KdforgeError(
            f"dCor inputs disagree: {tuple(x.shape)} vs {tuple(y.shape)}", "align batch and time"
        )
    if n < 3:
        raise KdforgeError(
            f"distance correlation is undefined for batch size {n} (needs >= 3)",
            "use a batch size of at least 3 (drop_last=True avoids a tiny last batch)",
        )
    if n > MAX_BATCH:
        raise KdforgeError(f"dCor batch {n} exceeds {MAX_BATCH} (O(N^2) memory)", "use a smaller batch")
    if x.dim() == 2:
        x, y = x.unsqueeze(1), y.unsqueeze(1)
    # [N, T, C] -> [T, N, C]: one N x N problem per time step
    dtype = torch.float64 if torch.float64 in (x.dtype, y.dtype) else torch.float32  # never fp16/bf16
    a = _centred_distances(x.transpose(0, 1).to(dtype), eps)
    b = _centred_distances(y.transpose(0, 1).to(dtype), eps)
    num = (a * b).mean((-1, -2))
    den = torch.sqrt((a * a).mean((-1, -2)) * (b * b).mean((-1, -2)) + eps)
    return (num / den).mean()


def dcor_loss(student: Tensor, teacher: Tensor, eps: float = 1e-9) -> Tensor:
    """``1 - distance_correlation(student, teacher)``; the teacher side is a target (detached)."""
    return 1.0 - distance_correlation(student, teacher.detach(), eps)


__all__ = ["MAX_BATCH", "dcor_loss", "distance_correlation"]

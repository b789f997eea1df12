"""FitNet hint loss."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def fitnet_loss(regressed_student: Tensor, teacher_feature: Tensor) -> Tensor:
    """Hint loss of FitNets (Romero et al., ICLR 2015), arXiv 1412.6550.

    .. math:: L_{hint} = \\frac{1}{N} \\lVert r(f_s) - f_t \\rVert_2^2

    where ``r`` is a trainable regressor (applied by the caller) mapping the
    student feature to the teacher feature's shape. Input space: features of any
    shape (identical for both arguments). Reduction: mean over *all* elements
    (``N`` = number of elements), as ``F.mse_loss(reduction="mean")``. The
    teacher feature is a target: it is detached here.
    """
    if regressed_student.shape != teacher_feature.shape:
        raise ValueError(
            f"FitNet shapes differ: regressed student {tuple(regressed_student.shape)} vs "
            f"teacher {tuple(teacher_feature.shape)}"
        )
    return F.mse_loss(regressed_student, teacher_feature.detach())

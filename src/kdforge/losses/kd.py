"""Hinton knowledge distillation loss."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 4.0) -> Tensor:
    """Soft-target distillation loss of Hinton, Vinyals & Dean (2015), arXiv 1503.02531.

    .. math::
        L_{KD} = T^2 \\cdot \\mathrm{KL}\\big(\\mathrm{softmax}(z_t/T)\\,\\|\\,\\mathrm{softmax}(z_s/T)\\big)

    Input space: raw *logits* for both models. The student side enters the KL as
    log-probabilities (``log_softmax``), the teacher side as probabilities.
    Reduction: ``batchmean`` (sum over classes, mean over the batch), i.e. the
    true KL per example. The ``T**2`` factor keeps gradient magnitudes
    comparable across temperatures (the soft-target gradient scales as 1/T^2).

    Args:
        student_logits: ``[B, C]`` (or ``[..., C]``; leading dims are flattened).
        teacher_logits: same shape, no gradient needed.
        temperature: softening temperature ``T > 0``.

    Returns:
        Scalar loss.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    c = student_logits.shape[-1]
    log_p_s = F.log_softmax(student_logits.reshape(-1, c) / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.reshape(-1, c) / temperature, dim=-1)
    kl = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    return kl * temperature**2


def hinton_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor,
    temperature: float,
    alpha: float,
) -> tuple[Tensor, Tensor]:
    """The two weighted terms of Hinton KD: ``((1-alpha)*CE, alpha*T^2*KL)``."""
    ce = F.cross_entropy(student_logits, targets)
    return (1 - alpha) * ce, alpha * kd_loss(student_logits, teacher_logits, temperature)

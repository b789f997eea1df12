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


#: Target value marking an unlabelled example (only the teacher's soft targets apply to it).
UNLABELLED = -1


def labelled_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy averaged over the labelled rows only (``targets >= 0``).

    Rows whose target is :data:`UNLABELLED` (any negative value) are left out of the mean; a batch
    without a labelled row gives ``0`` (still attached to the graph), not NaN as
    ``F.cross_entropy(..., ignore_index=-1)`` would. With every row labelled this equals
    ``F.cross_entropy(logits, targets)``.
    """
    labelled = targets >= 0
    if bool(labelled.all()):
        return F.cross_entropy(logits, targets)
    if not bool(labelled.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[labelled], targets[labelled])


def hinton_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor,
    temperature: float,
    alpha: float,
) -> tuple[Tensor, Tensor]:
    """The two weighted terms of Hinton KD: ``((1-alpha)*CE, alpha*T^2*KL)``.

    The CE term averages over labelled rows only (:func:`labelled_cross_entropy`), so examples
    marked ``y = -1`` (an unlabelled pool) learn from the teacher's soft targets alone.
    """
    ce = labelled_cross_entropy(student_logits, targets)
    return (1 - alpha) * ce, alpha * kd_loss(student_logits, teacher_logits, temperature)

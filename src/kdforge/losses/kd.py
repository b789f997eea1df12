"""Hinton knowledge distillation loss."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def soft_targets(teacher_logits: Tensor, temperature: float) -> Tensor:
    """The teacher's temperature-softened log-probabilities ``log_softmax(z_t / T)`` over the last dim.

    They depend only on the teacher's logits and ``T``, so a method reading cached teacher
    outputs computes them once per example instead of once per step (row ``i`` depends on row
    ``i`` alone).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return F.log_softmax(teacher_logits / temperature, dim=-1)


def kd_loss_log_targets(
    student_logits: Tensor, teacher_log_probs: Tensor, temperature: float = 4.0
) -> Tensor:
    """:func:`kd_loss` with the teacher side given as :func:`soft_targets` (log-probabilities).

    .. math::
        L_{KD} = T^2 \\cdot \\mathrm{KL}\\big(p_t \\,\\|\\, \\mathrm{softmax}(z_s/T)\\big),
        \\quad \\log p_t = \\texttt{teacher\\_log\\_probs}

    Input space: student *logits*, teacher *log-probabilities* at temperature ``T``.
    Reduction: ``batchmean``; the ``T**2`` factor as in :func:`kd_loss`. Both are applied as one
    scalar factor ``T**2 / B`` on the summed KL (fewer small ops on a tiny student's step).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if student_logits.dim() != 2:
        c = student_logits.shape[-1]
        student_logits, teacher_log_probs = student_logits.reshape(-1, c), teacher_log_probs.reshape(-1, c)
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1)
    kl_sum = F.kl_div(log_p_s, teacher_log_probs, reduction="sum", log_target=True)
    return kl_sum * (temperature**2 / student_logits.shape[0])


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 4.0) -> Tensor:
    """Soft-target distillation loss of Hinton, Vinyals & Dean (2015), arXiv 1503.02531.

    .. math::
        L_{KD} = T^2 \\cdot \\mathrm{KL}\\big(\\mathrm{softmax}(z_t/T)\\,\\|\\,\\mathrm{softmax}(z_s/T)\\big)

    Input space: raw *logits* for both models. Both sides enter the KL as log-probabilities
    (``log_softmax``; ``log_target=True``). Reduction: ``batchmean`` (sum over classes, mean
    over the batch), i.e. the true KL per example. The ``T**2`` factor keeps gradient
    magnitudes comparable across temperatures (the soft-target gradient scales as 1/T^2).

    Args:
        student_logits: ``[B, C]`` (or ``[..., C]``; leading dims are flattened).
        teacher_logits: same shape, no gradient needed.
        temperature: softening temperature ``T > 0``.

    Returns:
        Scalar loss.
    """
    return kd_loss_log_targets(student_logits, soft_targets(teacher_logits, temperature), temperature)


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
    log_p_t = soft_targets(teacher_logits, temperature)
    return hinton_loss_log_targets(student_logits, log_p_t, targets, temperature, alpha)


def hinton_loss_log_targets(
    student_logits: Tensor,
    teacher_log_probs: Tensor,
    targets: Tensor,
    temperature: float,
    alpha: float,
) -> tuple[Tensor, Tensor]:
    """:func:`hinton_loss` with the teacher side given as :func:`soft_targets` (log-probabilities)."""
    ce = labelled_cross_entropy(student_logits, targets)
    return (1 - alpha) * ce, alpha * kd_loss_log_targets(student_logits, teacher_log_probs, temperature)

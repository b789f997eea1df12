"""OPDF tensor alignment loss between the auxiliary MPO tensors of student and teacher layers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from kdforge.errors import KdforgeError


def default_layer_map(n_student: int, n_teacher: int) -> list[int]:
    """Teacher layer index for each student layer: ``l -> l * r + r - 1`` with ``r = n_teacher // n_student``.

    The reference pairs student layer ``l`` with teacher layer ``2l + 1`` for 12 -> 6 layers.

    Raises:
        KdforgeError: if the teacher has fewer layers than the student.
    """
    if n_student < 1 or n_teacher < n_student:
        raise KdforgeError(
            f"cannot map {n_student} student layers onto {n_teacher} teacher layers with l*r+r-1",
            "give an explicit layer_map {student layer: teacher layer}",
        )
    r = n_teacher // n_student
    return [i * r + r - 1 for i in range(n_student)]


def check_alignable(
    student: Sequence[Sequence[Tensor]],
    teacher: Sequence[Sequence[Tensor]],
    names: Sequence[tuple[str, str]] | None = None,
) -> None:
    """Raise a :class:`KdforgeError` naming every auxiliary tensor pair whose shapes differ."""
    names = names or [(f"student[{i}]", f"teacher[{i}]") for i in range(len(student))]
    if len(student) != len(teacher):
        raise KdforgeError(f"{len(student)} student layers but {len(teacher)} teacher layers to align", "")
    bad = []
    for (s_name, t_name), s_cores, t_cores in zip(names, student, teacher, strict=True):
        if len(s_cores) != len(t_cores):
            bad.append(f"{s_name} has {len(s_cores)} tensors, {t_name} has {len(t_cores)}")
            continue
        c = len(s_cores) // 2
        for k, (a, b) in enumerate(zip(s_cores, t_cores, strict=True)):
            if k != c and a.shape != b.shape:
                bad.append(f"{s_name}.cores.{k} {tuple(a.shape)} vs {t_name}.cores.{k} {tuple(b.shape)}")
    if bad:
        raise KdforgeError(
            "auxiliary MPO tensors of aligned layers differ in shape: " + "; ".join(bad),
            "factorize both layers so their outer factors and bonds agree (OPDF does this with "
            "propose_factorization(dim, n, common_with=other_dim)), give explicit factors, map the "
            "layer to a teacher layer of compatible shape, or set lambda_align=0",
        )


def tensor_alignment_loss(student: Sequence[Sequence[Tensor]], teacher: Sequence[Sequence[Tensor]]) -> Tensor:
    """Tensor alignment loss of OPDF (Zhan et al., "Over-parameterized Student Model via Tensor
    Decomposition Boosted Knowledge Distillation", NeurIPS 2024).

    For aligned layer pairs ``P`` (student layer ``l`` with teacher layer ``m``), each an MPO of
    ``n`` local tensors with centre ``c = n // 2``:

    .. math::
        L_{align} = \\frac{1}{|P|} \\sum_{(l, m) \\in P} \\frac{1}{n - 1} \\sum_{k \\ne c}
                    \\mathrm{mean}\\big((A^{s}_{l,k} - A^{t}_{m,k})^2\\big)

    i.e. the element-mean squared error between matching *auxiliary* tensors (the
    central tensors, which carry the spectrum, are free), averaged over tensors and
    layers. Input space: MPO local tensors of identical shapes (both layers decomposed
    with compatible factorizations, see :func:`check_alignable`). The teacher tensors
    are targets and are detached; the loss is differentiable in the student's tensors
    (the published code computed it from detached ``state_dict()`` copies). Multiply by
    ``lambda_align`` outside.

    Args:
        student: per aligned layer, the student's ``n`` cores.
        teacher: per aligned layer, the teacher's ``n`` cores (same shapes off-centre).

    Returns:
        Scalar loss (0 for a single-tensor MPO, which has no auxiliary tensors).

    Raises:
        KdforgeError: naming the mismatching tensors.
    """
    check_alignable(student, teacher)
    if not student:
        raise KdforgeError("no layer pairs to align", "over-parameterize at least one mapped layer")
    per_layer = []
    for s_cores, t_cores in zip(student, teacher, strict=True):
        c = len(s_cores) // 2
        terms = [
            F.mse_loss(a, b.detach()) for k, (a, b) in enumerate(zip(s_cores, t_cores, strict=True)) if k != c
        ]
        per_layer.append(torch.stack(terms).mean() if terms else s_cores[0].sum() * 0)
    return torch.stack(per_layer).mean()

"""Integrated-gradient attributions and the AD-KD attribution loss."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def integrated_gradients(
    forward: Callable[[Tensor], Tensor],
    inputs: Tensor,
    classes: Tensor,
    steps: int = 8,
    create_graph: bool = False,
) -> Tensor:
    """Integrated Gradients (Sundararajan et al., ICML 2017) from a zero baseline, for several classes.

    .. math::
        IG_c(x)_i = x_i \\cdot \\frac{1}{m} \\sum_{s=1}^{m} \\partial_{x_i} F_c\\big(\\tfrac{s}{m} x\\big)

    (right Riemann sum with ``m = steps``). ``forward`` maps inputs of ``inputs``'s
    shape ``(B, ...)`` to logits ``(B, C)``.

    Args:
        forward: the model as a function of its (embedded) input.
        inputs: ``(B, ...)`` input or input embeddings.
        classes: ``(B, K)`` class indices to attribute for each example ("multi-view").
        steps: number of interpolation points ``m``.
        create_graph: keep the graph so the attributions are differentiable w.r.t. the
            model's parameters (needed on the student side).

    Returns:
        ``(B, K, ...)`` attributions, one map per requested class.
    """
    b, k = classes.shape
    alphas = torch.arange(1, steps + 1, dtype=inputs.dtype, device=inputs.device) / steps
    scaled = (alphas.view(steps, 1, *[1] * (inputs.dim() - 1)) * inputs.detach().unsqueeze(0)).reshape(
        steps * b, *inputs.shape[1:]
    )
    with torch.enable_grad():
        scaled.requires_grad_(True)
        logits = forward(scaled).reshape(steps, b, -1)
        maps = []
        for j in range(k):
            sel = logits.gather(2, classes[:, j].view(1, b, 1).expand(steps, b, 1)).sum()
            (g,) = torch.autograd.grad(sel, scaled, create_graph=create_graph, retain_graph=True)
            x = inputs if create_graph else inputs.detach()  # the embedding itself may be trained
            maps.append(g.reshape(steps, b, *inputs.shape[1:]).mean(0) * x)
    return torch.stack(maps, 1)


def attribution_loss(student_attr: Tensor, teacher_attr: Tensor) -> Tensor:
    """AD-KD attribution loss (Wu et al., ACL 2023, "Attribution-Driven Knowledge Distillation for
    Language Model Compression").

    .. math::
        L_{attr} = \\frac{1}{B K} \\sum_{b, k} \\Big\\lVert
            \\frac{a^t_{b,k}}{\\lVert a^t_{b,k}\\rVert_2}
            - \\frac{a^s_{b,k}}{\\lVert a^s_{b,k}\\rVert_2} \\Big\\rVert_2^2

    where ``a_{b,k}`` is the attribution map of example ``b`` for class view ``k``
    over its tokens (or pixels). Input space: ``(B, K, T)`` token-level maps (reduce
    embedding dimensions before). Reduction: sum over tokens, mean over examples
    and views. The teacher map is a target and is detached.
    """
    if student_attr.shape != teacher_attr.shape:
        raise ValueError(
            f"attribution shapes differ: {tuple(student_attr.shape)} vs {tuple(teacher_attr.shape)}"
        )
    s = F.normalize(student_attr, p=2, dim=-1)
    t = F.normalize(teacher_attr.detach(), p=2, dim=-1)
    return (s - t).pow(2).sum(-1).mean()

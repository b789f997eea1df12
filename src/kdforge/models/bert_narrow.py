"""Narrower BERT students initialised from a wider teacher by weight selection.

Weight selection (Xu et al., "Initializing Models with Larger Ones", ICLR 2024,
arXiv 2311.18823): a student whose every dimension is ``1/f`` of the teacher's
takes every ``f``-th element of each teacher tensor along every shrunk axis.
For BERT this is consistent everywhere: the residual stream keeps dims
``0, f, 2f, ...`` in embeddings, LayerNorms, attention output and FFN output;
the number of heads stays, each head keeps every ``f``-th of its dims (so the
query/key/value rows stay grouped by head); the FFN keeps every ``f``-th unit.
Queries are scaled by ``sqrt(f)``: a dot product over ``1/f`` of the head dims
under the narrower head's ``1/sqrt(d/f)`` scale would otherwise shrink the
attention logits by ``sqrt(f)``.
"""

from __future__ import annotations

import copy
import math

import torch

from kdforge.errors import KdforgeError
from kdforge.models.hf import HFClassifier, minilm_student
from kdforge.registry import register_model


def select_every(t: torch.Tensor, shape: torch.Size, factor: int) -> torch.Tensor:
    """Every ``factor``-th element of ``t`` along each axis where ``shape`` is smaller."""
    for d, (big, small) in enumerate(zip(t.shape, shape, strict=True)):
        if big != small:
            t = t.index_select(d, torch.arange(0, big, factor, device=t.device))
    return t


def narrow_bert(model: HFClassifier, factor: int) -> HFClassifier:
    """A copy of a BERT :class:`HFClassifier` with hidden, head and FFN widths divided by ``factor``.

    Args:
        model: a classifier over a ``transformers`` ``BertModel`` (e.g. :func:`minilm_student`).
        factor: width divisor; must divide the hidden size, the head size and the FFN size.

    Returns:
        The narrower classifier; ``factor=1`` gives an exact copy.

    Raises:
        KdforgeError: ``factor`` does not divide the model's widths.
    """
    from transformers import BertModel

    cfg = copy.deepcopy(model.encoder.config)
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    sizes = {"hidden": cfg.hidden_size, "head": head_dim, "intermediate": cfg.intermediate_size}
    bad = {k: v for k, v in sizes.items() if factor < 1 or v % factor}
    if bad:
        raise KdforgeError(
            f"width factor {factor} does not divide the model's {bad}",
            f"choose a factor that divides {math.gcd(*sizes.values())} (e.g. 2 or 4)",
        )
    cfg.hidden_size //= factor
    cfg.intermediate_size //= factor
    encoder = BertModel(cfg, add_pooling_layer=model.encoder.pooler is not None)
    out = HFClassifier(encoder, cfg.hidden_size, model.head.out_features)
    source = model.state_dict()
    state = {k: select_every(source[k], v.shape, factor).clone() for k, v in out.state_dict().items()}
    for k in state:
        if k.endswith("attention.self.query.weight") or k.endswith("attention.self.query.bias"):
            state[k] *= math.sqrt(factor)
    out.load_state_dict(state)
    for name, p in out.named_parameters():
        p.requires_grad_(model.get_parameter(name).requires_grad)
    return out.train(model.training)


@register_model("minilm_narrow")
def minilm_narrow(
    input_shape: tuple[int, ...],
    num_classes: int,
    layers: tuple[int, ...] = (1, 3, 5),
    width_factor: int = 2,
    init_from: str | None = None,
    model_dir: str | None = None,
    freeze_word_embeddings: bool = False,
) -> HFClassifier:
    """A shallower *and* narrower MiniLM student: :func:`minilm_student`, then :func:`narrow_bert`.

    ``width_factor=2`` gives hidden 192, 12 heads of 16, FFN 768 (layers 1, 3, 5 of the
    fine-tuned teacher when ``init_from`` names its export).
    """
    wide = minilm_student(input_shape, num_classes, layers, init_from, model_dir, freeze_word_embeddings)
    return narrow_bert(wide, width_factor)


__all__ = ["minilm_narrow", "narrow_bert", "select_every"]

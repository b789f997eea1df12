"""The offline all-MiniLM-L6-v2 as a feature teacher for `kdforge distill` (a user's own builder file).

`--teacher benchmarks/minilm_encoder.py:minilm_encoder --teacher-outputs 384` gives `distill` the
pre-trained encoder's mean-pooled 384-d sentence features; `distill` then fits a head for the
data's classes on the training split (`--head probe`: the encoder stays frozen).
"""

from __future__ import annotations

import copy

from torch import nn


def minilm_encoder(input_shape: tuple[int, ...], num_classes: int, normalize: bool = False) -> nn.Module:
    """MiniLM sentence features ``[B, 384]`` (``num_classes`` is the feature width ``distill`` asks for)."""
    from kdforge.models.hf import MINILM_HIDDEN, SentenceEncoder, load_minilm

    if num_classes != MINILM_HIDDEN:
        raise ValueError(f"MiniLM features are {MINILM_HIDDEN} wide: pass --teacher-outputs {MINILM_HIDDEN}")
    return SentenceEncoder(copy.deepcopy(load_minilm()), normalize=normalize)

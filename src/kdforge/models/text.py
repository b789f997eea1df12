"""Small text students trained from scratch over MiniLM token ids, and masked mean pooling.

The models here take ``input_ids`` and ``attention_mask`` (int64, ``[B, T]``) and return
logits ``[B, num_classes]``; their ``input_shape`` is ``(max_len,)``. They share the
MiniLM WordPiece vocabulary (:data:`MINILM_VOCAB` ids) so the same tokenized data feeds the
MiniLM teacher (:mod:`kdforge.models.hf`) and these students. Blocks are named modules
(``blocks.i``, ``pool``, ``head``) so features can be read by path.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from kdforge.registry import register_model

MINILM_VOCAB = 30522  # size of the all-MiniLM-L6-v2 WordPiece vocabulary


def masked_mean(h: Tensor, attention_mask: Tensor) -> Tensor:
    """Mean of ``h`` ``[B, T, C]`` over the positions where ``attention_mask`` ``[B, T]`` is 1."""
    m = attention_mask.to(h.dtype).unsqueeze(-1)
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


class MaskedMeanPool(nn.Module):
    """``[B, T, C]`` token states -> ``[B, C]`` masked mean; a named module so hooks can read it."""

    def forward(self, h: Tensor, attention_mask: Tensor) -> Tensor:
        return masked_mean(h, attention_mask)


class _ConvBlock(nn.Module):
    """``[B, T, C_in]`` -> ``[B, T, C_out]``: 1-D conv over time, ReLU, padding positions zeroed."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, padding=kernel // 2)
        self.act = nn.ReLU()

    def forward(self, h: Tensor, attention_mask: Tensor) -> Tensor:
        out = self.act(self.conv(h.transpose(1, 2))).transpose(1, 2)
        return out * attention_mask.unsqueeze(-1).to(out.dtype)


class TextCNN(nn.Module):
    """Small text student: token embedding, conv blocks (``blocks.i``, ``[B,T,C]``), ``pool``, ``head``."""

    def __init__(
        self, num_classes: int, vocab: int = MINILM_VOCAB, emb: int = 64, channels=(128, 128), kernel: int = 5
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, emb, padding_idx=0)
        widths = [emb, *channels]
        self.blocks = nn.ModuleList(
            _ConvBlock(a, b, kernel) for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        self.pool = MaskedMeanPool()
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        h = self.embed(input_ids) * attention_mask.unsqueeze(-1).to(self.embed.weight.dtype)
        for block in self.blocks:
            h = block(h, attention_mask)
        return self.head(self.dropout(self.pool(h, attention_mask)))


class TinyTransformer(nn.Module):
    """Small transformer student (from scratch): ``embed``, ``blocks.i`` ``[B,T,C]``, ``pool``, ``head``."""

    def __init__(
        self,
        num_classes: int,
        max_len: int,
        vocab: int = MINILM_VOCAB,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(max_len, dim) / math.sqrt(dim))
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.1, batch_first=True, norm_first=True)
            for _ in range(depth)
        )
        self.pool = MaskedMeanPool()
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        t = input_ids.shape[1]
        if t > self.pos.shape[0]:
            raise ValueError(f"sequence length {t} exceeds max_len {self.pos.shape[0]}")
        h = self.embed(input_ids) + self.pos[:t]
        pad = attention_mask == 0
        for block in self.blocks:
            h = block(h, src_key_padding_mask=pad)
        return self.head(self.norm(self.pool(h, attention_mask)))


@register_model("text_cnn")
def text_cnn(
    input_shape: tuple[int, ...], num_classes: int, emb: int = 64, channels=(128, 128), kernel: int = 5
) -> TextCNN:
    """1-D CNN over MiniLM token ids (trained from scratch); ``input_shape = (max_len,)``."""
    return TextCNN(num_classes, MINILM_VOCAB, emb, tuple(channels), kernel)


@register_model("tiny_transformer")
def tiny_transformer(
    input_shape: tuple[int, ...], num_classes: int, dim: int = 64, depth: int = 2, heads: int = 4
) -> TinyTransformer:
    """A 2-layer, 64-wide transformer over MiniLM token ids (trained from scratch)."""
    return TinyTransformer(num_classes, int(input_shape[0]), MINILM_VOCAB, dim, depth, heads)


__all__ = ["MINILM_VOCAB", "MaskedMeanPool", "TextCNN", "TinyTransformer", "masked_mean"]

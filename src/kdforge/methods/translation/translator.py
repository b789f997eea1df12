"""Tokenisation of block parameters and translators (MLP-Mixer, attention, MLP) behind one interface.

Tokens: each ``[out, in, k, k]`` conv weight becomes ``out*in`` tokens of ``k*k`` values; each BN
layer of the large block becomes ``C`` tokens ``(weight, bias, running mean, running var)``
zero-padded to the token width. The round trip params -> tokens -> params is exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdforge.errors import unknown
from kdforge.methods.translation.networks import BlockSpec


def token_dim(spec: BlockSpec) -> int:
    """Width of every token: ``max(k*k, 4)``."""
    return max(spec.kernel**2, 4)


def large_names(spec: BlockSpec) -> list[str]:
    """Tensors of the large block that shape its function (stored keys), in token order."""
    out = []
    for i in (1, 2):
        out += [
            f"large.conv{i}",
            f"large.bn{i}.w",
            f"large.bn{i}.b",
            f"stats.large.bn{i}.mean",
            f"stats.large.bn{i}.var",
        ]
    return out


def tokenize_large(pairs: dict[str, Tensor], spec: BlockSpec) -> Tensor:
    """Large-block params (stacked [B, ...]) -> tokens [B, 2*C*C + 2*C, d]."""
    d, parts = token_dim(spec), []
    for i in (1, 2):
        w = pairs[f"large.conv{i}"]
        parts.append(F.pad(w.flatten(-2), (0, d - spec.kernel**2)).flatten(1, 2))
        bn = torch.stack(
            [
                pairs[f"large.bn{i}.w"],
                pairs[f"large.bn{i}.b"],
                pairs[f"stats.large.bn{i}.mean"],
                pairs[f"stats.large.bn{i}.var"],
            ],
            -1,
        )
        parts.append(F.pad(bn, (0, d - 4)))
    return torch.cat(parts, 1)


def detokenize_large(tokens: Tensor, spec: BlockSpec) -> dict[str, Tensor]:
    """Inverse of :func:`tokenize_large`."""
    c, k, out, pos = spec.channels, spec.kernel, {}, 0
    for i in (1, 2):
        out[f"large.conv{i}"] = tokens[:, pos : pos + c * c, : k * k].reshape(-1, c, c, k, k)
        pos += c * c
        bn = tokens[:, pos : pos + c, :4]
        pos += c
        for j, n in enumerate(
            (f"large.bn{i}.w", f"large.bn{i}.b", f"stats.large.bn{i}.mean", f"stats.large.bn{i}.var")
        ):
            out[n] = bn[..., j]
    return out


def tokenize_small(pairs: dict[str, Tensor], spec: BlockSpec) -> Tensor:
    """Small-block params -> tokens [B, 2*b*C, k*k]."""
    return torch.cat(
        [pairs["small.conv1"].flatten(-2).flatten(1, 2), pairs["small.conv2"].flatten(-2).flatten(1, 2)], 1
    )


def detokenize_small(tokens: Tensor, spec: BlockSpec) -> dict[str, Tensor]:
    """Inverse of :func:`tokenize_small`."""
    c, h, k = spec.channels, spec.bottleneck, spec.kernel
    n = c * h
    return {
        "small.conv1": tokens[:, :n].reshape(-1, h, c, k, k),
        "small.conv2": tokens[:, n:].reshape(-1, c, h, k, k),
    }


def n_tokens(spec: BlockSpec) -> tuple[int, int]:
    """(input tokens, output tokens)."""
    return 2 * spec.channels**2 + 2 * spec.channels, 2 * spec.channels * spec.bottleneck


class _MixerLayer(nn.Module):
    def __init__(self, t: int, d: int, t_hidden: int, d_hidden: int, dropout: float) -> None:
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.tok = nn.Sequential(
            nn.Linear(t, t_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(t_hidden, t)
        )
        self.ch = nn.Sequential(
            nn.Linear(d, d_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_hidden, d)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.tok(self.n1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.ch(self.n2(x))


class Translator(nn.Module):
    """Tokens of a large block [B, T_in, d] -> tokens of a small block [B, T_out, k*k].

    Args:
        spec: Block shapes.
        kind: ``"mixer"`` (reference-like MLP-Mixer), ``"attention"`` (transformer encoder), ``"mlp"``.
        dim: Embedding width.
        depth: Number of mixer/encoder layers (hidden layers for ``mlp``).
        dropout: Dropout probability.
    """

    KINDS = ("mixer", "attention", "mlp")

    def __init__(
        self, spec: BlockSpec, kind: str = "mixer", dim: int = 64, depth: int = 4, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if kind not in self.KINDS:
            raise unknown("translator", kind, self.KINDS)
        self.spec, self.kind = spec, kind
        t_in, t_out = n_tokens(spec)
        d_in, d_out = token_dim(spec), spec.kernel**2
        self.t_out, self.d_out = t_out, d_out
        if kind == "mlp":
            layers: list[nn.Module] = [nn.Flatten(), nn.Linear(t_in * d_in, dim * 8), nn.GELU()]
            for _ in range(depth - 1):
                layers += [nn.Linear(dim * 8, dim * 8), nn.GELU(), nn.Dropout(dropout)]
            self.body = nn.Sequential(*layers, nn.Linear(dim * 8, t_out * d_out))
            return
        self.embed = nn.Linear(d_in, dim)
        if kind == "mixer":
            self.layers = nn.Sequential(
                *[_MixerLayer(t_in, dim, 2 * t_in, 4 * dim, dropout) for _ in range(depth)]
            )
        else:
            self.pos = nn.Parameter(torch.randn(1, t_in, dim) * 0.02)
            enc = nn.TransformerEncoderLayer(dim, 4, 4 * dim, dropout, batch_first=True, norm_first=True)
            self.layers = nn.TransformerEncoder(enc, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.tok_proj = nn.Sequential(nn.Linear(t_in, 2 * t_in), nn.GELU(), nn.Linear(2 * t_in, t_out))
        self.head = nn.Linear(dim, d_out)

    def forward(self, tokens: Tensor) -> Tensor:
        """Translate a batch of (normalised) large-block tokens into small-block tokens."""
        if self.kind == "mlp":
            return self.body(tokens).view(-1, self.t_out, self.d_out)
        h = self.embed(tokens)
        h = self.layers(h + self.pos if self.kind == "attention" else h)
        h = self.tok_proj(self.norm(h).transpose(1, 2)).transpose(1, 2)
        return self.head(h)

"""Tokenisation of block parameters and translators (MLP-Mixer, attention, MLP) behind one interface.

Tokens: each ``[out, in, k, k]`` conv weight becomes ``out*in`` tokens of ``k*k`` values; each BN
layer of the large block becomes ``C`` tokens ``(weight, bias, running mean, running var)``
zero-padded to the token width. The round trip params -> tokens -> params is exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdforge.errors import KdforgeError, unknown
from kdforge.methods.translation import networks
from kdforge.methods.translation.align import channel_features
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


def _large_starts(spec: BlockSpec) -> tuple[int, int, int, int]:
    """First token of conv1, BN1, conv2 and BN2 in :func:`tokenize_large`'s layout."""
    c = spec.channels
    return 0, c * c, c * c + c, 2 * c * c + c


def hidden_permutation(spec: BlockSpec, perm: Tensor) -> Tensor:
    """Token order that permutes the large block's hidden channels: [B, T_in] gather index.

    The ``C`` channels between the large block's two convs (conv1 outputs, BN1, conv2 inputs) can be
    reordered without changing the block's function; ``tokens.gather(1, idx)`` applies ``perm``
    ([B, C], new hidden channel j = old channel ``perm[:, j]``) to :func:`tokenize_large`'s tokens.
    """
    c, (_, bn1, conv2, bn2) = spec.channels, _large_starts(spec)
    o = torch.arange(c)
    conv1_idx = (perm[:, :, None] * c + o).flatten(1)  # out channel j <- perm[j]
    conv2_idx = (conv2 + o[:, None] * c + perm[:, None, :]).flatten(1)  # in channel j <- perm[j]
    return torch.cat([conv1_idx, bn1 + perm, conv2_idx, (bn2 + o).expand(len(perm), c)], 1)


def hidden_rescale(tokens: Tensor, spec: BlockSpec, scale: Tensor) -> Tensor:
    """Rescale the large block's hidden channels without changing its function.

    ReLU is positively homogeneous, so multiplying BN1's weight and bias of hidden channel ``j`` by
    ``scale[:, j] > 0`` and dividing conv2's weights that read channel ``j`` by it leaves the block's
    output unchanged. ``tokens``: :func:`tokenize_large`'s (unnormalised) [B, T_in, d]; ``scale`` [B, C].
    """
    c, (_, bn1, conv2, bn2) = spec.channels, _large_starts(spec)
    out = tokens.clone()
    out[:, bn1:conv2, :2] *= scale[..., None]
    w2 = out[:, conv2:bn2].view(len(out), c, c, -1)  # [B, out o, in j, d]: a view, divided in place
    w2 /= scale[:, None, :, None]
    return out


def context_features(pairs: dict[str, Tensor], spec: BlockSpec) -> Tensor:
    """The blocks around the large one, as one vector per network: [B, F] (see :func:`context_dim`).

    The small block must read the begin block's features and write what the last block reads, so a
    translator may look at both (parameters only: translation still uses no data). Begin and last
    are taken with their eval-mode BN folded in (begin: filter + bias per channel; last: 1x1 conv +
    bias), and the classifier as its weight per (class, last channel) averaged over positions, + bias.
    """
    p = {k: v for k, v in pairs.items() if k.startswith("last.")}
    s = {k[6:]: v for k, v in pairs.items() if k.startswith("stats.last.")}
    last = torch.func.vmap(networks.fold_last)(p, s)
    b = len(last["conv"])
    fc = last["fc.w"].view(b, spec.num_classes, spec.last_channels, -1).mean(-1)
    parts = (channel_features(pairs), last["conv"], last["bias"], fc, last["fc.b"])
    return torch.cat([t.reshape(b, -1) for t in parts], 1)


def context_dim(spec: BlockSpec) -> int:
    """Length of :func:`context_features`' vector."""
    c, lc = spec.channels, spec.last_channels
    return c * (spec.in_channels * 9 + 1) + lc * (c + 1) + spec.num_classes * (lc + 1)


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


class _HiddenSet(nn.Module):
    """Set translator: the large block as the *set* of its hidden channels, order-free by design.

    Hidden channel ``j`` is one element: conv1's filter ``j`` (all inputs), its BN1 row, and conv2's
    weights reading it (all outputs). A transformer encoder without positions runs over the ``C``
    elements (permutation-equivariant), mean- and max-pooling make the result invariant to every
    reordering of the hidden channels (an exact symmetry of the block), and an MLP reads it with
    BN2 (the block's outputs; their order is fixed by the begin/last blocks) and the context.
    """

    def __init__(self, spec: BlockSpec, dim: int, depth: int, dropout: float, context: int, out: int) -> None:
        super().__init__()
        c, k2 = spec.channels, spec.kernel**2
        self.spec = spec
        self.embed = nn.Linear(2 * c * k2 + 4, dim)
        enc = nn.TransformerEncoderLayer(dim, 4, 4 * dim, dropout, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(enc, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        extra = 4 * c + (context_dim(spec) if context else 0)
        self.head = nn.Sequential(
            nn.Linear(2 * dim + extra, 4 * dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(4 * dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, out),
        )

    def forward(self, tokens: Tensor, context: Tensor | None) -> Tensor:
        c, k2, b = self.spec.channels, self.spec.kernel**2, len(tokens)
        _, bn1, conv2, bn2 = _large_starts(self.spec)
        w1 = tokens[:, :bn1, :k2].reshape(b, c, c * k2)  # [B, hidden j, (in, k*k)]
        w2 = tokens[:, conv2:bn2, :k2].reshape(b, c, c, k2).transpose(1, 2).reshape(b, c, c * k2)
        h = self.embed(torch.cat([w1, tokens[:, bn1:conv2, :4], w2], -1))
        h = self.norm(self.layers(h))
        parts = [h.mean(1), h.amax(1), tokens[:, bn2:, :4].flatten(1)]
        return self.head(torch.cat(parts + ([context] if context is not None else []), 1))


class Translator(nn.Module):
    """Tokens of a large block [B, T_in, d] -> tokens of a small block [B, T_out, k*k].

    Args:
        spec: Block shapes.
        kind: ``"mixer"`` (reference-like MLP-Mixer), ``"attention"`` (transformer encoder), ``"mlp"``,
            or ``"set"`` (:class:`_HiddenSet`: invariant to reordering the large block's hidden channels).
        dim: Embedding width.
        depth: Number of mixer/encoder layers (hidden layers for ``mlp``).
        dropout: Dropout probability.
        context: Extra input tokens made from :func:`context_features` (the begin and last blocks
            around the large block) by a linear map; 0 = the large block only. (``set`` reads the
            context vector directly when ``context`` > 0.)
    """

    KINDS = ("mixer", "attention", "mlp", "set")

    def __init__(
        self,
        spec: BlockSpec,
        kind: str = "mixer",
        dim: int = 64,
        depth: int = 4,
        dropout: float = 0.0,
        context: int = 0,
    ) -> None:
        super().__init__()
        if kind not in self.KINDS:
            raise unknown("translator", kind, self.KINDS)
        if context and kind == "mlp":
            raise KdforgeError("the MLP translator takes no context tokens", "use kind mixer or attention")
        self.spec, self.kind, self.context = spec, kind, context
        t_in, t_out = n_tokens(spec)
        d_in, d_out = token_dim(spec), spec.kernel**2
        self.t_out, self.d_out = t_out, d_out
        if kind == "mlp":
            layers: list[nn.Module] = [nn.Flatten(), nn.Linear(t_in * d_in, dim * 8), nn.GELU()]
            for _ in range(depth - 1):
                layers += [nn.Linear(dim * 8, dim * 8), nn.GELU(), nn.Dropout(dropout)]
            self.body = nn.Sequential(*layers, nn.Linear(dim * 8, t_out * d_out))
            return
        if kind == "set":
            self.body = _HiddenSet(spec, dim, depth, dropout, context, t_out * d_out)
            return
        self.embed = nn.Linear(d_in, dim)
        if context:
            self.ctx = nn.Linear(context_dim(spec), context * dim)
            t_in += context
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

    def forward(self, tokens: Tensor, context: Tensor | None = None) -> Tensor:
        """Translate a batch of (normalised) large-block tokens into small-block tokens.

        Args:
            tokens: [B, T_in, d] large-block tokens.
            context: [B, F] normalised :func:`context_features` (required iff built with context).
        """
        if self.kind == "mlp":
            return self.body(tokens).view(-1, self.t_out, self.d_out)
        if self.context and context is None:
            raise KdforgeError("this translator reads context tokens but got none", "pass context")
        if self.kind == "set":
            return self.body(tokens, context if self.context else None).view(-1, self.t_out, self.d_out)
        h = self.embed(tokens)
        if self.context:
            h = torch.cat([h, self.ctx(context).view(len(h), self.context, -1)], 1)
        h = self.layers(h + self.pos if self.kind == "attention" else h)
        h = self.tok_proj(self.norm(h).transpose(1, 2)).transpose(1, 2)
        return self.head(h)

"""Channel alignment: put every network's block channels into a reference network's order.

The ``C`` channels between the begin block and the last block can be permuted (begin conv outputs,
large block inputs/outputs and BN, last conv inputs, small block inputs/outputs) without changing what
a network computes, and independently trained networks order them arbitrarily. Translators see the
large block in that arbitrary order, and a fixed starting block (the functional objective's template)
meets features in another order than it was trained on. :func:`align_channels` picks, per network,
the permutation whose begin-block channels are nearest to a reference network's (each channel as its
BN-folded affine filter: ``C!`` candidates, exhaustive for small ``C``) and applies it to every
stored tensor. It reads parameters only: no data, no gradient step.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from kdforge.errors import KdforgeError
from kdforge.methods.translation import networks

# stored tensor -> dims indexed by the C begin/large/last channels (dim 0 = the network)
CHANNEL_DIMS: dict[str, tuple[int, ...]] = {
    "begin.conv": (1,),
    "begin.bn.w": (1,),
    "begin.bn.b": (1,),
    "stats.begin.bn.mean": (1,),
    "stats.begin.bn.var": (1,),
    "large.conv1": (2,),
    "large.conv2": (1,),
    "large.bn2.w": (1,),
    "large.bn2.b": (1,),
    "stats.large.bn2.mean": (1,),
    "stats.large.bn2.var": (1,),
    "last.conv": (2,),
    "small.conv1": (2,),
    "small.conv2": (1,),
}


def channel_features(pairs: dict[str, Tensor]) -> Tensor:
    """Each begin channel as its BN-folded affine filter: [P, C, in*k*k + 1]."""
    scale = pairs["begin.bn.w"] / torch.sqrt(pairs["stats.begin.bn.var"] + networks.BN_EPS)
    w = pairs["begin.conv"].flatten(2) * scale[..., None]
    b = pairs["begin.bn.b"] - pairs["stats.begin.bn.mean"] * scale
    return torch.cat([w, b[..., None]], -1)


def best_permutations(pairs: dict[str, Tensor], ref: Tensor, max_channels: int = 8) -> Tensor:
    """Per network, the channel order nearest to ``ref`` ([C, F] channel features): [P, C] long.

    Raises:
        KdforgeError: more than ``max_channels`` channels (exhaustive search would be too slow).
    """
    f = channel_features(pairs)  # [P, C, F]
    c = f.shape[1]
    if c > max_channels:
        raise KdforgeError(
            f"channel alignment searches all {c}! orders; {c} channels is too many",
            f"use alignment with at most {max_channels} channels",
        )
    cost = torch.cdist(ref[None].expand(len(f), -1, -1), f).pow(2)  # [P, ref channel, own channel]
    perms = torch.tensor(list(itertools.permutations(range(c))))  # [C!, C]
    total = cost[:, torch.arange(c), perms].sum(-1)  # [P, C!]: ref channel i <- own channel perm[i]
    return perms[total.argmin(-1)]


def permute_channels(pairs: dict[str, Tensor], perm: Tensor) -> dict[str, Tensor]:
    """Apply per-network channel orders ``perm`` [P, C] (new channel i = old channel perm[i])."""
    out = dict(pairs)
    for name, dims in CHANNEL_DIMS.items():
        if name not in pairs:
            continue
        t = pairs[name]
        for d in dims:
            shape = [len(perm)] + [1] * (t.dim() - 1)
            shape[d] = perm.shape[1]
            idx = perm.view(shape).expand(*t.shape[:d], perm.shape[1], *t.shape[d + 1 :])
            t = torch.gather(t, d, idx)
        out[name] = t
    return out


def align_channels(pairs: dict[str, Tensor], reference: dict[str, Tensor]) -> dict[str, Tensor]:
    """Permute every network's channels into the order of ``reference`` (one network, unstacked [1, ...]).

    The networks compute exactly the same functions afterwards (up to float rounding).
    """
    ref = channel_features(reference)[0]
    return permute_channels(pairs, best_permutations(pairs, ref))

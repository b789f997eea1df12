"""Evaluation of translators on held-out networks (validation for selection, test for reporting)."""

from __future__ import annotations

import torch
from torch import Tensor

from kdforge.errors import KdforgeError
from kdforge.methods.translation import grouped, networks
from kdforge.methods.translation.train import TrainedTranslator


def split_networks(
    pairs: dict[str, Tensor], val_frac: float = 0.15, test_frac: float = 0.25
) -> tuple[dict, dict, dict]:
    """Split a pair set by position (seed order) into (train, validation, test) networks."""
    n = len(pairs["seed"])
    n_test, n_val = max(1, int(n * test_frac)), max(1, int(n * val_frac))
    if n - n_test - n_val < 1:
        raise KdforgeError(
            f"only {n} pairs: too few to split into train/validation/test networks",
            "generate at least 3 pairs (dozens for meaningful numbers)",
        )
    idx = torch.arange(n)
    take = lambda i: {k: v[i] for k, v in pairs.items()}  # noqa: E731
    return (
        take(idx[: n - n_val - n_test]),
        take(idx[n - n_val - n_test : n - n_test]),
        take(idx[n - n_test :]),
    )


def shared_and_stats(pairs: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(begin + last params, their BN stats) of stacked pairs."""
    p = {k: v for k, v in pairs.items() if k.startswith(("begin.", "last."))}
    s = {k[6:]: v for k, v in pairs.items() if k.startswith(("stats.begin", "stats.last"))}
    return p, s


def small_accuracy(
    pairs: dict[str, Tensor], small: dict[str, Tensor], x: Tensor, y: Tensor, skip: bool = True
) -> Tensor:
    """Accuracy of each network's begin/last around the given small blocks (eval-mode BN): [P].

    Args:
        skip: The small block's identity skip (``BlockSpec.small_skip``).
    """
    p, s = shared_and_stats(pairs)
    return grouped.accuracy({**p, **small}, s, x, y, "small", skip)


def random_small(spec: networks.BlockSpec, n: int, seed: int) -> dict[str, Tensor]:
    """``n`` randomly initialised small blocks (PyTorch-default init)."""
    g = torch.Generator().manual_seed(seed)
    blocks = [networks.init_params(spec, "small", g) for _ in range(n)]
    return {k: torch.stack([b[k] for b in blocks]) for k in blocks[0]}


def evaluate(
    tt: TrainedTranslator, test_pairs: dict[str, Tensor], x: Tensor, y: Tensor, seed: int = 0
) -> dict:
    """Per test network: translated / random-init / trained small-block accuracy, and the large net's."""
    small = tt.translate(test_pairs)
    return {
        "translated": small_accuracy(test_pairs, small, x, y, tt.spec.small_skip).tolist(),
        "random_init": small_accuracy(
            test_pairs, random_small(tt.spec, len(test_pairs["seed"]), seed), x, y, tt.spec.small_skip
        ).tolist(),
        "trained": test_pairs["acc_small"].tolist(),
        "large": test_pairs["acc_large"].tolist(),
    }

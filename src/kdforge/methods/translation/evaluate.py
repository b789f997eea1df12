"""Evaluation of translators on held-out networks (validation for selection, test for reporting)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from kdforge.errors import KdforgeError
from kdforge.methods.translation import networks
from kdforge.methods.translation.grouped import small_accuracy
from kdforge.methods.translation.train import TrainedTranslator

#: shares of a pair set's networks held out for validation (selection) and test (reporting); the
#: CLI, the benchmarks and the README's tables all use these, so they score the same test networks
VAL_FRACTION = 0.1
TEST_FRACTION = 0.2


def split_indices(
    n: int, val_frac: float = VAL_FRACTION, test_frac: float = TEST_FRACTION
) -> tuple[range, range, range]:
    """Positions of the (train, validation, test) networks of a pair set of ``n`` networks.

    The last ``int(n * test_frac)`` networks (at least 1) are the test networks, the
    ``int(n * val_frac)`` (at least 1) before them the validation networks, the rest train.
    """
    n_test, n_val = max(1, int(n * test_frac)), max(1, int(n * val_frac))
    if n - n_test - n_val < 1:
        raise KdforgeError(
            f"only {n} pairs: too few to split into train/validation/test networks",
            "generate at least 3 pairs (dozens for meaningful numbers)",
        )
    return range(n - n_val - n_test), range(n - n_val - n_test, n - n_test), range(n - n_test, n)


def split_networks(
    pairs: dict[str, Tensor], val_frac: float = VAL_FRACTION, test_frac: float = TEST_FRACTION
) -> tuple[dict, dict, dict]:
    """Split a pair set by position (seed order) into (train, validation, test) networks."""
    parts = split_indices(len(pairs["seed"]), val_frac, test_frac)
    return tuple({k: v[torch.tensor(list(i))] for k, v in pairs.items()} for i in parts)


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


def ratio_interval(
    translated: Sequence[Sequence[float]],
    reference: Sequence[float],
    n_boot: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Ratio of mean accuracies with a network-bootstrap confidence interval.

    ``ratio = mean_n(mean_s translated[s][n]) / mean_n(reference[n])``: the translated blocks'
    accuracy (averaged over translator seeds first) over a reference's (e.g. the directly trained
    small blocks) on the same test networks. The interval resamples *networks* with replacement,
    each keeping its translated and reference accuracy together, and takes the percentiles of the
    resampled ratios: the uncertainty that comes from which test networks were drawn.

    Args:
        translated: Per translator seed, one accuracy per test network ([seeds][networks]).
        reference: One accuracy per test network, in the same order.

    Returns:
        ``(ratio, low, high)``.
    """
    per_network = torch.tensor(translated, dtype=torch.float64).mean(0)
    ref = torch.tensor(reference, dtype=torch.float64)
    if per_network.shape != ref.shape:
        raise KdforgeError(
            f"{len(per_network)} translated vs {len(reference)} reference accuracies",
            "pass both lists over the same test networks",
        )
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(ref), (n_boot, len(ref)), generator=gen)
    ratios = per_network[idx].mean(1) / ref[idx].mean(1)
    tail = (1 - confidence) / 2
    low, high = torch.quantile(ratios, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return float(per_network.mean() / ref.mean()), low, high

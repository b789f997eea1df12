"""Paired deltas with bootstrap confidence intervals, and verdicts against a target.

Two pairings:

- :func:`paired_bootstrap` pairs runs: ``method[i]`` and ``baseline[i]`` share seed ``i``
  (same split, same initialisation stream). The pairs are resampled together, so variation
  both share cancels. With 3-5 seeds the percentile interval is narrow-biased (few distinct
  resamples): it measures seed-to-seed variation only, not the finite test set.
- :func:`paired_bootstrap_examples` pairs per test example *and* seed: two ``[seeds,
  examples]`` arrays (e.g. 0/1 correctness), resampling seeds and examples independently
  (a two-way bootstrap), so the interval covers both the seed and the test-set sampling.

Both return the percentile interval (Efron & Tibshirani, *An Introduction to the Bootstrap*,
1993, ch. 13) of the mean difference ``mean(method - baseline)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from kdforge.errors import KdforgeError

_CHUNK_CELLS = 4_000_000  # resampled cells per chunk (bounds memory for per-example pairing)


@dataclass
class Interval:
    """A point estimate with a two-sided confidence interval.

    Attributes:
        mean: The estimate (the observed mean difference).
        low: Lower bound of the interval.
        high: Upper bound of the interval.
        confidence: Coverage the interval was built for (0.95 for a 95% interval).
    """

    mean: float
    low: float
    high: float
    confidence: float

    def to_dict(self) -> dict[str, float]:
        """Plain dict for results files."""
        return asdict(self)

    def format(self, scale: float = 1.0, digits: int = 2, signed: bool = True) -> str:
        """``"+1.23 [+0.40, +2.05]"`` (values times ``scale``; ``signed`` prints a + sign)."""
        fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
        lo, hi = fmt.format(self.low * scale), fmt.format(self.high * scale)
        return f"{fmt.format(self.mean * scale)} [{lo}, {hi}]"


def _check_confidence(confidence: float, n_boot: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise KdforgeError(f"confidence must lie in (0, 1), got {confidence}", "use e.g. 0.95")
    if n_boot < 100:
        raise KdforgeError(f"n_boot={n_boot} resamples are too few for an interval", "use n_boot >= 1000")


def _percentile_interval(estimate: float, boot: np.ndarray, confidence: float) -> Interval:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(boot, [tail, 1.0 - tail])
    return Interval(float(estimate), float(low), float(high), confidence)


def paired_bootstrap(
    method: Sequence[float],
    baseline: Sequence[float],
    n_boot: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Bootstrap interval of ``mean(method - baseline)``, resampling the pairs together.

    Args:
        method: One value per pair (e.g. test accuracy per seed).
        baseline: The paired values, in the same order.
        n_boot: Bootstrap resamples.
        confidence: Two-sided coverage of the interval.
        seed: Seed of the resampling generator (the same inputs and seed give the same interval).

    Raises:
        KdforgeError: for lists of different lengths, fewer than 2 pairs or non-finite values.
    """
    diffs = np.asarray(method, dtype=np.float64) - _same_length(method, baseline)
    if diffs.ndim != 1 or diffs.size < 2:
        raise KdforgeError(
            f"a paired interval needs at least 2 pairs, got {diffs.size}", "run at least 2 seeds (3+)"
        )
    _check_finite(diffs)
    _check_confidence(confidence, n_boot)
    rng = np.random.default_rng(seed)
    n = diffs.size
    chunk = max(1, _CHUNK_CELLS // n)
    boot = np.concatenate(
        [
            diffs[rng.integers(0, n, size=(min(chunk, n_boot - s), n))].mean(axis=1)
            for s in range(0, n_boot, chunk)
        ]
    )
    return _percentile_interval(diffs.mean(), boot, confidence)


def paired_bootstrap_examples(
    method: Sequence[Sequence[float]] | np.ndarray,
    baseline: Sequence[Sequence[float]] | np.ndarray,
    n_boot: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Two-way bootstrap interval of the mean per-example difference, pooled over seeds.

    Args:
        method: ``[seeds, examples]`` per-example scores (e.g. 1.0 where the prediction is
            right), one row per seed.
        baseline: The same shape; row ``i`` shares seed ``i``, column ``j`` test example ``j``.
        n_boot: Bootstrap resamples; each draws seeds (rows) and examples (columns) with
            replacement, independently.
        confidence: Two-sided coverage of the interval.
        seed: Seed of the resampling generator.

    Raises:
        KdforgeError: for arrays of different shapes, not 2-D, or with fewer than 2 examples.
    """
    method_arr = np.asarray(method, dtype=np.float64)
    diffs = method_arr - _same_length(method, baseline)
    if diffs.ndim != 2 or diffs.shape[1] < 2:
        raise KdforgeError(
            f"per-example scores must be [seeds, examples] with >= 2 examples, got shape {diffs.shape}",
            "stack one row of per-example scores per seed",
        )
    _check_finite(diffs)
    _check_confidence(confidence, n_boot)
    rng = np.random.default_rng(seed)
    n_seeds, n_examples = diffs.shape
    chunk = max(1, _CHUNK_CELLS // n_examples)
    boot = []
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        seed_counts = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=size)
        per_example = seed_counts @ diffs  # [size, examples]: resampled seeds summed per example
        examples = rng.integers(0, n_examples, size=(size, n_examples))
        boot.append(np.take_along_axis(per_example, examples, axis=1).sum(axis=1) / (n_seeds * n_examples))
    return _percentile_interval(diffs.mean(), np.concatenate(boot), confidence)


def _same_length(method, baseline) -> np.ndarray:
    base = np.asarray(baseline, dtype=np.float64)
    if np.shape(method) != base.shape:
        raise KdforgeError(
            f"method and baseline differ in shape ({np.shape(method)} vs {base.shape})",
            "pass paired values: the same seeds (and examples) in the same order",
        )
    return base


def _check_finite(diffs: np.ndarray) -> None:
    if not np.all(np.isfinite(diffs)):
        raise KdforgeError("paired values contain NaN or inf", "drop or re-run the runs that diverged")


def verdict(interval: Interval, target: float) -> str:
    """Whether an interval clears a target.

    Returns:
        ``"met"`` iff ``interval.low >= target``, ``"missed"`` iff ``interval.high < target``,
        ``"not distinguishable"`` otherwise (the interval straddles the target).
    """
    if interval.low >= target:
        return "met"
    if interval.high < target:
        return "missed"
    return "not distinguishable"

"""Property and golden-value tests of the distance-correlation loss."""

from __future__ import annotations

import math

import pytest
import torch

from kdforge.errors import KdforgeError
from kdforge.losses.dcor import dcor_loss, distance_correlation


def reference_dcor(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-9) -> float:
    """Textbook double loops in float64 (Szekely et al. 2007 V-statistic, squared dCor)."""
    x, y = x.double().tolist(), y.double().tolist()
    n = len(x)

    def centred(z):
        d = [
            [math.sqrt(sum((a - b) ** 2 for a, b in zip(z[i], z[j], strict=True)) + eps) for j in range(n)]
            for i in range(n)
        ]
        row = [sum(r) / n for r in d]
        col = [sum(d[i][j] for i in range(n)) / n for j in range(n)]
        tot = sum(row) / n
        return [[d[i][j] - row[i] - col[j] + tot for j in range(n)] for i in range(n)]

    a, b = centred(x), centred(y)
    m = lambda p, q: sum(p[i][j] * q[i][j] for i in range(n) for j in range(n)) / n**2  # noqa: E731
    return m(a, b) / math.sqrt(m(a, a) * m(b, b) + eps)


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_golden_value_matches_reference():
    x = torch.randn(12, 5, generator=_g(0), dtype=torch.float64)
    y = torch.tanh(x @ torch.randn(5, 3, generator=_g(1), dtype=torch.float64)) + 0.3 * torch.randn(
        12, 3, generator=_g(2), dtype=torch.float64
    )
    ours = distance_correlation(x, y).item()
    assert ours == pytest.approx(reference_dcor(x, y), abs=1e-10)
    assert 0.2 < ours < 0.99  # a genuinely partial dependence, not a trivial 0 or 1


@pytest.mark.parametrize("seed", range(5))
def test_in_unit_interval(seed):
    x = torch.randn(20, 7, generator=_g(seed))
    y = torch.randn(20, 4, generator=_g(seed + 100)) ** 3
    r = distance_correlation(x, y).item()
    assert 0.0 <= r <= 1.0
    assert dcor_loss(x, y).item() == pytest.approx(1 - r, abs=1e-6)


def test_one_for_isometry_and_scaling():
    x = torch.randn(32, 16, generator=_g(3), dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=_g(4), dtype=torch.float64))
    assert distance_correlation(x, x @ q + 5.0).item() == pytest.approx(1.0, abs=1e-6)
    assert distance_correlation(x, 7.5 * x).item() == pytest.approx(1.0, abs=1e-6)
    # embedding into more dimensions (D != C) is still an isometry
    assert distance_correlation(
        x, torch.cat([x, torch.zeros(32, 9, dtype=x.dtype)], 1)
    ).item() == pytest.approx(1.0, abs=1e-6)


def test_invariant_to_feature_permutation_and_scale():
    x = torch.randn(24, 10, generator=_g(5), dtype=torch.float64)
    y = x[:, :6] ** 2 + torch.randn(24, 6, generator=_g(6), dtype=torch.float64)
    r = distance_correlation(x, y).item()
    perm = torch.randperm(10, generator=_g(7))
    assert distance_correlation(x[:, perm], y).item() == pytest.approx(r, abs=1e-10)
    # exact up to the sqrt(eps) put on zero distances: tiny while distances >> sqrt(eps) = 3e-5
    assert distance_correlation(0.5 * x, 300.0 * y).item() == pytest.approx(r, abs=1e-5)
    assert r < 0.95  # not trivially 1


def test_near_zero_for_independent_features():
    x = torch.randn(1000, 8, generator=_g(8))
    y = torch.randn(1000, 8, generator=_g(9))
    # the V-statistic is biased upward by O(1/N): small, and shrinking with N
    r_1000 = distance_correlation(x, y).item()
    assert r_1000 < 0.04
    assert r_1000 < distance_correlation(x[:100], y[:100]).item()
    # while a dependent (non-linear) pair of the same size is far from 0
    assert distance_correlation(x, torch.tanh(x) + 0.5 * y).item() > 0.3


def test_sequences_average_over_time():
    x = torch.randn(10, 3, 4, generator=_g(10), dtype=torch.float64)
    y = torch.randn(10, 3, 6, generator=_g(11), dtype=torch.float64)
    per_t = [distance_correlation(x[:, t], y[:, t]).item() for t in range(3)]
    assert distance_correlation(x, y).item() == pytest.approx(sum(per_t) / 3, abs=1e-12)


def test_gradcheck_float64():
    x = torch.randn(6, 4, dtype=torch.float64, generator=_g(12), requires_grad=True)
    y = torch.randn(6, 3, dtype=torch.float64, generator=_g(13), requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: distance_correlation(a, b, eps=1e-6), (x, y))


def test_loss_detaches_teacher():
    x = torch.randn(8, 4, requires_grad=True)
    y = torch.randn(8, 3, requires_grad=True)
    dcor_loss(x, y).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert y.grad is None


@pytest.mark.parametrize("n", [1, 2])
def test_small_batch_is_a_clear_error(n):
    with pytest.raises(KdforgeError, match="undefined for batch size"):
        dcor_loss(torch.randn(n, 4), torch.randn(n, 3))


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(KdforgeError, match="disagree"):
        dcor_loss(torch.randn(8, 4), torch.randn(7, 3))
    with pytest.raises(KdforgeError, match=r"\[N, C\]"):
        dcor_loss(torch.randn(8, 4), torch.randn(8, 2, 3))


@pytest.mark.parametrize("offset", [0.0, 100.0, 1000.0, 1e4])
def test_float32_matches_float64_reference_on_offset_features(offset):
    """dCor is translation-invariant: a float32 batch far from the origin keeps its precision."""
    x64 = torch.randn(64, 16, generator=_g(7), dtype=torch.float64)
    y64 = x64 + 0.1 * torch.randn(64, 16, generator=_g(9), dtype=torch.float64)
    reference = distance_correlation(x64, y64).item()  # float64, at the origin
    assert 0.95 < reference < 0.9999  # strong but imperfect dependence: where precision shows
    r32 = distance_correlation((x64 + offset).float(), (y64 + offset).float()).item()
    assert r32 == pytest.approx(reference, abs=1e-4)
    seq = distance_correlation((x64 + offset).float().unsqueeze(1), (y64 + offset).float().unsqueeze(1))
    assert seq.item() == pytest.approx(reference, abs=1e-4)

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdforge.losses import fitnet_loss, hinton_loss, kd_loss

ZS = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
ZT = [[2.0, 1.0, 0.0], [1.0, 1.0, 1.0]]


def textbook_kd(zs, zt, T):
    """T^2 * mean_b sum_c p_t log(p_t / p_s), written out with numpy."""
    zs, zt = np.asarray(zs) / T, np.asarray(zt) / T
    ps = np.exp(zs) / np.exp(zs).sum(1, keepdims=True)
    pt = np.exp(zt) / np.exp(zt).sum(1, keepdims=True)
    return T**2 * np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), axis=1))


# Golden values computed once by hand from the formula (numpy, float64).
GOLDEN = {1.0: 0.8664324831, 4.0: 0.9545201454}


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_kd_golden(T):
    got = kd_loss(torch.tensor(ZS), torch.tensor(ZT), T).item()
    assert got == pytest.approx(textbook_kd(ZS, ZT, T), rel=1e-6)
    assert got == pytest.approx(GOLDEN[T], rel=1e-6)


def test_kd_golden_catches_common_bugs():
    T = 4.0
    zs, zt = torch.tensor(ZS), torch.tensor(ZT)
    # bug 1: probabilities fed where log-probabilities are expected
    probs_bug = F.kl_div(F.softmax(zs / T, -1), F.softmax(zt / T, -1), reduction="batchmean") * T**2
    # bug 2: T^2 factor dropped;  bug 3: reduction 'mean' (divides by classes too)
    no_t2 = kd_loss(zs, zt, T) / T**2
    mean_red = F.kl_div(F.log_softmax(zs / T, -1), F.softmax(zt / T, -1), reduction="mean") * T**2
    for bug in (probs_bug, no_t2, mean_red):
        assert abs(bug.item() - GOLDEN[T]) > 1e-3


def test_kd_zero_iff_equal_and_nonnegative():
    z = torch.randn(16, 10)
    assert kd_loss(z, z, 3.0).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(torch.randn(16, 10), z, 3.0).item() > 0


def test_kd_gradient_scale_comparable_across_T():
    # with T^2 the soft-target gradient magnitude stays O(1) as T grows (Hinton et al. sec. 2)
    torch.manual_seed(0)
    zt = torch.randn(64, 10)
    norms = []
    for T in (2.0, 8.0, 32.0):
        zs = torch.randn(64, 10, generator=torch.Generator().manual_seed(1)).requires_grad_()
        kd_loss(zs, zt, T).backward()
        norms.append(zs.grad.norm().item())
    assert max(norms) / min(norms) < 4


def test_kd_gradcheck():
    zs = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    zt = torch.randn(4, 5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: kd_loss(a, zt, 2.5), (zs,))


def test_hinton_terms():
    zs, zt, y = torch.tensor(ZS), torch.tensor(ZT), torch.tensor([1, 2])
    ce, kl = hinton_loss(zs, zt, y, 4.0, 0.75)
    assert ce.item() == pytest.approx(0.25 * F.cross_entropy(zs, y).item(), rel=1e-6)
    assert kl.item() == pytest.approx(0.75 * GOLDEN[4.0], rel=1e-6)


def test_kd_rejects_bad_temperature():
    with pytest.raises(ValueError):
        kd_loss(torch.zeros(1, 2), torch.zeros(1, 2), 0.0)


def test_fitnet_golden_and_gradcheck():
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    b = torch.tensor([[0.0, 2.0], [1.0, 0.0]])
    assert fitnet_loss(a, b).item() == pytest.approx((1 + 0 + 4 + 16) / 4)
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randn(3, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda s: fitnet_loss(s, t), (x,))
    with pytest.raises(ValueError, match="shapes differ"):
        fitnet_loss(torch.zeros(2, 3), torch.zeros(2, 4))


def test_fitnet_no_grad_into_teacher():
    s = torch.randn(3, 4, requires_grad=True)
    t = torch.randn(3, 4, requires_grad=True)
    fitnet_loss(s, t).backward()
    assert t.grad is None and s.grad is not None
    assert math.isfinite(s.grad.sum().item())


def test_hinton_ce_ignores_unlabelled_rows():
    torch.manual_seed(0)
    zs, zt = torch.randn(6, 4), torch.randn(6, 4)
    y = torch.tensor([2, -1, 0, -1, -1, 3])
    ce, kl = hinton_loss(zs, zt, y, 2.0, 0.5)
    keep = y >= 0
    assert ce.item() == pytest.approx(0.5 * F.cross_entropy(zs[keep], y[keep]).item(), rel=1e-6)
    assert kl.item() == pytest.approx(0.5 * kd_loss(zs, zt, 2.0).item(), rel=1e-6)  # KL on every row


def test_hinton_all_unlabelled_batch_is_finite_and_trains_on_soft_targets():
    zs = torch.randn(5, 3, requires_grad=True)
    ce, kl = hinton_loss(zs, torch.randn(5, 3), torch.full((5,), -1), 4.0, 0.9)
    assert ce.item() == 0.0
    (ce + kl).backward()
    assert torch.isfinite(zs.grad).all() and zs.grad.abs().sum() > 0

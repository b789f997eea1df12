"""Tensor alignment loss: golden value, gradients, layer map, shape errors."""

from __future__ import annotations

import pytest
import torch

from kdforge.errors import KdforgeError
from kdforge.losses.alignment import default_layer_map, tensor_alignment_loss
from kdforge.tensor.mpo import mpo_decompose, propose_factorization

torch.set_num_threads(1)


def test_golden_value_and_centre_ignored():
    s = [[torch.zeros(1, 2, 2, 3), torch.full((3, 1, 1, 3), 5.0), torch.ones(3, 2, 2, 1)]]
    t = [[torch.ones(1, 2, 2, 3), torch.zeros(3, 1, 1, 3), torch.full((3, 2, 2, 1), 3.0)]]
    # aux tensors 0 and 2: mse 1 and 4 -> mean 2.5; the centre (index 1) is not compared
    assert tensor_alignment_loss(s, t).item() == pytest.approx(2.5)
    s2 = s + [[torch.zeros(2, 2), torch.zeros(2, 2)]]  # n = 2: centre 1, one aux tensor, mse 0
    t2 = t + [[torch.zeros(2, 2), torch.ones(2, 2)]]
    assert tensor_alignment_loss(s2, t2).item() == pytest.approx((2.5 + 0.0) / 2)


def test_differentiable_in_student_only():
    s = [[torch.randn(1, 2, 2, 4, requires_grad=True), torch.randn(4, 2, 2, 1, requires_grad=True)]]
    t = [[torch.randn(1, 2, 2, 4, requires_grad=True), torch.randn(4, 2, 2, 1, requires_grad=True)]]
    tensor_alignment_loss(s, t).backward()
    torch.testing.assert_close(s[0][0].grad, 2 * (s[0][0] - t[0][0]).detach() / 16)
    assert s[0][1].grad is None or s[0][1].grad.abs().sum() == 0  # centre of n=2 is index 1
    assert t[0][0].grad is None


def test_identical_decompositions_align_to_zero_and_width_absorbed_by_centre():
    torch.manual_seed(0)
    w_s, w_t = torch.randn(64, 784), torch.randn(512, 784)
    rs, rt = propose_factorization(64, 5, 512), propose_factorization(512, 5, 64)
    c = propose_factorization(784, 5, 784)
    s, t = mpo_decompose(w_s, rs, c), mpo_decompose(w_t, rt, c)
    assert [x.shape for k, x in enumerate(s.cores) if k != 2] == [
        x.shape for k, x in enumerate(t.cores) if k != 2
    ]
    assert s.cores[2].shape != t.cores[2].shape
    assert tensor_alignment_loss([s.cores], [t.cores]).item() > 0
    assert tensor_alignment_loss([s.cores], [[x.clone() for x in s.cores]]).item() == 0


def test_mismatch_names_tensors():
    s = [[torch.zeros(1, 2, 2, 4), torch.zeros(4, 1, 1, 4), torch.zeros(4, 2, 2, 1)]]
    t = [[torch.zeros(1, 2, 2, 4), torch.zeros(4, 3, 1, 4), torch.zeros(4, 2, 3, 1)]]
    with pytest.raises(
        KdforgeError, match=r"cores\.2 \(4, 2, 2, 1\) vs teacher\[0\]\.cores\.2 \(4, 2, 3, 1\)"
    ):
        tensor_alignment_loss(s, t)


def test_default_layer_map():
    assert default_layer_map(6, 12) == [1, 3, 5, 7, 9, 11]
    assert default_layer_map(2, 3) == [0, 1]
    assert default_layer_map(1, 1) == [0]
    with pytest.raises(KdforgeError, match="layer_map"):
        default_layer_map(3, 2)

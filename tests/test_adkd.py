"""AD-KD: IG completeness, golden attribution loss, gradients, OPDF wrapping."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdforge.losses.attribution import attribution_loss, integrated_gradients
from kdforge.methods.adkd import ADKD
from kdforge.methods.opdf import OPDF
from kdforge.models.mlp import mlp

torch.set_num_threads(1)
SHAPE = (1, 4, 4)


def _batch(n: int = 5):
    g = torch.Generator().manual_seed(0)
    return {"x": torch.rand(n, *SHAPE, generator=g), "y": torch.randint(0, 10, (n,), generator=g)}


def test_ig_exact_for_linear_model():
    # F(x) = W x: IG_c(x)_i = x_i W_ci exactly (gradient is constant), any number of steps
    lin = nn.Linear(6, 3, bias=False)
    x = torch.randn(2, 6)
    classes = torch.tensor([[0, 2], [1, 0]])
    attr = integrated_gradients(lin, x, classes, steps=3)
    assert attr.shape == (2, 2, 6)
    torch.testing.assert_close(attr[0, 1], x[0] * lin.weight[2])
    torch.testing.assert_close(attr[1, 0], x[1] * lin.weight[1])


def test_ig_completeness_nonlinear():
    # sum_i IG_i -> F(x) - F(0) as steps grow
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2))
    x = torch.randn(3, 5)
    classes = torch.zeros(3, 1, dtype=torch.long)
    attr = integrated_gradients(model, x, classes, steps=256)
    gap = model(x)[:, 0] - model(torch.zeros_like(x))[:, 0]
    torch.testing.assert_close(attr.sum(-1)[:, 0], gap.detach(), atol=2e-2, rtol=0)


def test_attribution_loss_golden():
    s = torch.tensor([[[3.0, 4.0]]])  # normalised: (0.6, 0.8)
    t = torch.tensor([[[1.0, 0.0]]])
    assert attribution_loss(s, t).item() == pytest.approx(0.4**2 + 0.8**2)
    assert attribution_loss(2 * t, t).item() == pytest.approx(0.0)  # scale invariant


def test_adkd_step_grads_reach_student_through_attributions():
    torch.manual_seed(0)
    student, teacher = mlp(SHAPE, 10, hidden=(8,)), mlp(SHAPE, 10, hidden=(16,))
    m = ADKD.build(student, teacher, {"steps": 4, "top_k": 2, "alpha": 0.0})
    _, losses = m.training_step(_batch())
    assert set(losses) == {"ce", "kd", "attr"} and losses["kd"].item() == 0
    student.zero_grad()
    losses["attr"].backward()
    assert student.blocks[0][0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_adkd_embedding_path_on_sequence_model():
    class Tiny(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.emb = nn.Embedding(20, width)
            self.head = nn.Linear(width, 3)

        def forward(self, ids):
            return self.head(torch.tanh(self.emb(ids)).mean(1))

    torch.manual_seed(0)
    m = ADKD.build(Tiny(4), Tiny(6), {"steps": 4, "top_k": 3, "embedding_path": "emb", "input_key": "ids"})
    batch = {"ids": torch.randint(0, 20, (2, 5)), "y": torch.tensor([0, 2])}
    _, losses = m.training_step(batch)
    assert 0 < losses["attr"].item() <= 4.0  # two unit vectors differ by at most 2 -> squared <= 4
    losses["attr"].backward()
    assert m.student.emb.weight.grad.abs().sum() > 0


def test_opdf_wraps_adkd():
    torch.manual_seed(0)
    m = OPDF.build(
        mlp(SHAPE, 10, hidden=(16,)),
        mlp(SHAPE, 10, hidden=(64,)),
        {"base": "adkd", "base_kwargs": {"steps": 2, "top_k": 1}, "n": 3, "lambda_align": 0.1},
        example_batch=_batch(),
    )
    _, losses = m.training_step(_batch())
    assert set(losses) == {"ce", "kd", "attr", "align"}
    sum(losses.values()).backward()
    assert m.layers["blocks.0.0"].cores[0].grad is not None

import math

import pytest
import torch

from kdforge.config import TrainConfig, from_dict
from kdforge.engine.optim import build_optimizer, lr_factor
from kdforge.engine.run import run_experiment

from conftest import digits_recipe


def test_lr_factor_golden():
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(55, 100, 10, "linear") == pytest.approx(0.5)
    assert lr_factor(77, 100, 0, "constant") == 1.0


def test_optimizer_groups_keep_their_lr():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = build_optimizer([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.01}], TrainConfig(lr=0.5))
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]


def test_bf16_mixed_precision_trains(tmp_path):
    s = run_experiment(
        from_dict(digits_recipe(tmp_path, train={"mixed_precision": "bf16", "epochs": 3})), progress=False
    )
    assert s["test_acc"] > 0.7 and math.isfinite(s["test_loss"])


def test_grad_clip_bounds_update(tmp_path, monkeypatch):
    seen = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *a, **k):
        params = list(params)
        out = real(params, max_norm, *a, **k)
        seen.append(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])).item())
        return out

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    run_experiment(from_dict(digits_recipe(tmp_path, train={"grad_clip": 0.05, "epochs": 1})), progress=False)
    assert seen and max(seen) <= 0.05 + 1e-6

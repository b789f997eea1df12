import pytest
import torch

from kdforge.errors import KdforgeError
from kdforge.methods.fitnet import FitNet, make_regressor
from kdforge.models import build_model
from kdforge.models.hooks import FeatureHooks, get_module


def test_unknown_path_lists_nearest():
    m = build_model("cnn", (1, 8, 8), 10)
    with pytest.raises(KdforgeError, match=r"no module 'blocks\.7'.*blocks\."):
        get_module(m, "blocks.7", "student")


def test_hooks_capture_named_output():
    m = build_model("mlp", (1, 8, 8), 10, hidden=[5, 6])
    hooks = FeatureHooks(m, ["blocks.1"])
    m(torch.rand(3, 1, 8, 8))
    assert hooks["blocks.1"].shape == (3, 6)
    hooks.remove()


def test_regressor_shapes():
    assert isinstance(make_regressor(torch.Size([2, 4, 7, 7]), torch.Size([2, 8, 7, 7])), torch.nn.Conv2d)
    assert isinstance(make_regressor(torch.Size([2, 4]), torch.Size([2, 8])), torch.nn.Linear)
    with pytest.raises(KdforgeError, match="not shape-compatible"):
        make_regressor(torch.Size([2, 4, 7, 7]), torch.Size([2, 8]))
    with pytest.raises(KdforgeError, match="not shape-compatible"):
        make_regressor(torch.Size([2, 4, 7, 7]), torch.Size([2, 8, 14, 14]))


def test_fitnet_incompatible_features_fail_at_build():
    s = build_model("cnn", (1, 8, 8), 10, channels=[4, 8])
    t = build_model("mlp", (1, 8, 8), 10)
    batch = {"x": torch.rand(2, 1, 8, 8), "y": torch.zeros(2, dtype=torch.long)}
    with pytest.raises(KdforgeError, match="not shape-compatible"):
        FitNet.build(s, t, {"student_path": "blocks.0", "teacher_path": "blocks.0"}, batch)
    with pytest.raises(KdforgeError, match="teacher has no module 'blok'"):
        FitNet.build(s, t, {"student_path": "blocks.0", "teacher_path": "blok"}, batch)


def test_fitnet_conv_hint_decreases():
    torch.manual_seed(0)
    s = build_model("cnn", (1, 8, 8), 10, channels=[4, 8], batchnorm=False)
    t = build_model("cnn", (1, 8, 8), 10, channels=[16, 8], batchnorm=False)
    batch = {"x": torch.rand(32, 1, 8, 8), "y": torch.randint(0, 10, (32,))}
    m = FitNet.build(s, t, {"student_path": "blocks.0", "teacher_path": "blocks.0", "beta": 1.0}, batch)
    opt = torch.optim.Adam(m.trainable_parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        _, losses = m.training_step(batch)
        first = first if first is not None else losses["hint"].item()
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    assert losses["hint"].item() < 0.5 * first

"""MPO / SVD layers and overparameterize / collapse round trips."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdforge.errors import KdforgeError
from kdforge.layers import (
    MPOLinear,
    SVDLinear,
    collapse,
    factorized_layers,
    load_plain_state_dict,
    overparameterize,
)
from kdforge.models.cnn import cnn
from kdforge.models.mlp import count_parameters, mlp

# small SVDs: one thread avoids pathological oversubscription on shared 2-core machines
torch.set_num_threads(1)


def _lin(out_f: int, in_f: int, bias: bool = True) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(in_f, out_f, bias=bias)


@pytest.mark.parametrize("mode", ["contract", "sequential", "auto"])
@pytest.mark.parametrize(
    "shape,rf,cf", [((24, 36), [2, 3, 4], [3, 4, 3]), ((64, 784), [8, 1, 1, 1, 8], None)]
)
def test_mpo_linear_matches_dense(mode, shape, rf, cf):
    lin = _lin(*shape)
    layer = MPOLinear.from_linear(lin, rf, cf, forward_mode=mode)
    x = torch.randn(5, 3, shape[1])
    torch.testing.assert_close(layer(x), lin(x), atol=1e-5, rtol=1e-4)
    assert sum(c.numel() for c in layer.cores) > shape[0] * shape[1]  # over-parameterized
    back = layer.to_linear()
    assert type(back) is nn.Linear
    torch.testing.assert_close(back.weight, lin.weight, atol=1e-5, rtol=0)
    torch.testing.assert_close(back.bias, lin.bias)


def test_sequential_equals_contract_gradients():
    layer = MPOLinear.from_linear(_lin(12, 18, bias=False), [2, 3, 2], [3, 2, 3])
    x = torch.randn(4, 18)
    grads = {}
    for mode in ("contract", "sequential"):
        layer.forward_mode = mode
        layer.zero_grad()
        layer(x).pow(2).sum().backward()
        grads[mode] = [c.grad.clone() for c in layer.cores]
    for a, b in zip(grads["contract"], grads["sequential"], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_auto_mode_picks_by_cost():
    layer = MPOLinear.from_linear(_lin(64, 784), [8, 1, 1, 1, 8], [28, 1, 1, 1, 28])
    assert layer.choose_mode(1) == "sequential"  # one row: never form the 64x784 matrix
    assert layer.choose_mode(4096) == "contract"  # large batch: forming W once is cheaper
    small = MPOLinear.from_linear(_lin(16, 16), [4, 4], [4, 4])
    assert small.contract_flops(1) == (1 * 16) * 16 * 16 * 1 + 1 * 16 * 16  # one merge + F.linear


def test_svd_linear_exact_and_trainable():
    lin = _lin(20, 30)
    layer = SVDLinear.from_linear(lin)
    assert {n for n, _ in layer.named_parameters()} == {"U", "s", "V", "bias"}
    assert layer.U.shape == (20, 20) and layer.V.shape == (30, 20)
    x = torch.randn(7, 30)
    for mode in ("contract", "sequential"):
        layer.forward_mode = mode
        torch.testing.assert_close(layer(x), lin(x), atol=1e-5, rtol=1e-4)
    layer(x).sum().backward()
    assert all(p.grad is not None for p in layer.parameters())


@pytest.mark.parametrize("method", ["mpo", "svd"])
def test_overparameterize_collapse_roundtrip_mlp(method):
    torch.manual_seed(0)
    model = mlp((1, 8, 8), 10, hidden=(32, 16))
    ref = [type(m) for m in model.modules()]
    n_plain = count_parameters(model)
    x = torch.randn(6, 1, 8, 8)
    y0 = model(x)
    swapped = overparameterize(model, ["blocks.*.0", "head"], method=method, n=3)
    assert set(swapped) == {"blocks.0.0", "blocks.1.0", "head"}
    assert count_parameters(model) > n_plain
    torch.testing.assert_close(model(x), y0, atol=1e-5, rtol=1e-4)
    # train a step so collapsing is not trivially the original
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(x).pow(2).mean().backward()
    opt.step()
    y1 = model(x)
    plain = collapse(model)
    assert [type(m) for m in plain.modules()] == ref
    assert count_parameters(plain) == n_plain
    torch.testing.assert_close(plain(x), y1, atol=1e-5, rtol=1e-5)
    assert factorized_layers(model)  # the training model is left intact


def test_regex_patterns_and_cnn():
    model = cnn((1, 8, 8), 10, channels=(4, 8), fc=16)
    got = overparameterize(model, ["re:(fc\\.0|head)"], n=2)
    assert set(got) == {"fc.0", "head"}


def test_errors():
    model = mlp((1, 8, 8), 10, hidden=(32,))
    with pytest.raises(KdforgeError, match=r"(?s)'encoder\.\*' matches no nn.Linear.*blocks\.0\.0"):
        overparameterize(model, ["encoder.*"])
    with pytest.raises(KdforgeError, match="nothing to collapse"):
        collapse(model)
    with pytest.raises(KdforgeError, match="multiplies to 30"):
        overparameterize(model, ["head"], factors={"head": ([2, 5], [2, 15])})
    with pytest.raises(KdforgeError, match="unknown over-parameterization"):
        overparameterize(model, ["head"], method="cp")


def test_loading_overparam_checkpoint_into_plain_model_fails_clearly():
    torch.manual_seed(0)
    big = mlp((1, 8, 8), 10, hidden=(32,))
    plain = mlp((1, 8, 8), 10, hidden=(32,))
    overparameterize(big, ["blocks.0.0"], n=3)
    with pytest.raises(KdforgeError, match=r"over-parameterized.*blocks\.0\.0"):
        load_plain_state_dict(plain, big.state_dict())
    load_plain_state_dict(plain, collapse(big).state_dict())  # the collapsed one loads
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(plain(x), big(x), atol=1e-5, rtol=1e-5)

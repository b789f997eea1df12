"""Knowledge Translation: tokenisation, augmentation, translators, vmapped parity, bad input."""

from __future__ import annotations

import pytest
import torch

from kdforge.errors import KdforgeError
from kdforge.methods.translation import networks
from kdforge.methods.translation.augment import Augment
from kdforge.methods.translation.translator import (
    Translator,
    context_dim,
    context_features,
    detokenize_large,
    detokenize_small,
    hidden_permutation,
    hidden_rescale,
    n_tokens,
    tokenize_large,
    tokenize_small,
)


def _fake_pairs(spec: networks.BlockSpec, n: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    shapes = {**spec.large_shapes(), **spec.small_shapes()}
    out = {k: torch.randn((n, *s), generator=g) for k, s in shapes.items()}
    for i in (1, 2):
        out[f"stats.large.bn{i}.mean"] = torch.randn(n, spec.channels, generator=g)
        out[f"stats.large.bn{i}.var"] = torch.rand(n, spec.channels, generator=g) + 0.5
    return out


@pytest.mark.parametrize(
    "spec", [networks.BlockSpec(), networks.BlockSpec(channels=8, bottleneck=2, kernel=5)]
)
def test_tokenisation_round_trip_is_exact(spec):
    p = _fake_pairs(spec)
    tok = tokenize_large(p, spec)
    assert tok.shape == (3, n_tokens(spec)[0], max(spec.kernel**2, 4))
    back = detokenize_large(tok, spec)
    assert set(back) == {k for k in p if "large" in k}  # conv weights AND BN params/stats
    for k, v in back.items():
        assert torch.equal(v, p[k]), k
    small = detokenize_small(tokenize_small(p, spec), spec)
    for k, v in small.items():
        assert torch.equal(v, p[k]), k


def test_augment_masking_and_noise_statistics():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1000, generator=g) * 3.0 + 1.0
    m = Augment(mask_p=0.3).apply(x, g)
    assert abs((m == 0).float().mean().item() - 0.3) < 0.01
    n = Augment(noise_sigma=0.1).apply(x, g)
    rel = ((n - x).std(1) / x.std(1)).mean().item()
    assert abs(rel - 0.1) < 0.005
    xi, yi = Augment(mask_p=0.5, on="target")(x, x, g)
    assert torch.equal(xi, x) and not torch.equal(yi, x)
    with pytest.raises(KdforgeError):
        Augment(mask_p=1.5)


@pytest.mark.parametrize("kind", Translator.KINDS)
def test_translator_output_shapes_and_grad(kind):
    spec = networks.BlockSpec()
    t = Translator(spec, kind, dim=16, depth=2)
    tok = tokenize_large(_fake_pairs(spec, 5), spec)
    out = t(tok)
    assert out.shape == (5, n_tokens(spec)[1], 9)
    out.square().mean().backward()
    assert all(p.grad is not None for p in t.parameters())
    small = detokenize_small(out.detach(), spec)
    assert small["small.conv1"].shape == (5, 3, 6, 3, 3) and small["small.conv2"].shape == (5, 6, 3, 3, 3)


def test_unknown_translator_kind_is_clear():
    with pytest.raises(KdforgeError, match="unknown translator"):
        Translator(networks.BlockSpec(), "mixr")


def test_bn_matches_torch_and_folding_is_exact():
    spec = networks.BlockSpec(image_size=8)
    g = torch.Generator().manual_seed(1)
    p = {**networks.init_params(spec, "shared", g), **networks.init_params(spec, "large", g)}
    s = networks.init_stats(spec, "large")
    x = torch.rand(16, 1, 8, 8, generator=g)
    _, new = networks.forward(p, s, x, "large", True)
    bn = torch.nn.BatchNorm2d(6)
    bn.train()
    bn(torch.nn.functional.conv2d(x, p["begin.conv"], padding=1))
    assert torch.allclose(new["begin.bn.mean"], bn.running_mean, atol=1e-6)
    assert torch.allclose(new["begin.bn.var"], bn.running_var, atol=1e-6)
    h = torch.rand(4, 6, 4, 4, generator=g)
    ref = networks.last_forward(p, new, h, False, {})
    assert torch.allclose(networks.folded_last_forward(networks.fold_last(p, new), h), ref, atol=1e-5)


def test_cli_help_and_bad_input_are_clear(tmp_path):
    from typer.testing import CliRunner

    from kdforge.methods.translation.cli import app

    r = CliRunner().invoke(app, ["--help"])
    assert r.exit_code == 0 and "make-pairs" in r.output and "eval" in r.output
    r = CliRunner().invoke(app, ["eval", "--pairs", str(tmp_path), "--translator", "x.safetensors"])
    assert r.exit_code == 2 and "no manifest.json" in r.output and "fix:" in r.output


def test_hidden_reordering_and_rescaling_keep_the_large_block_function():
    spec = networks.BlockSpec(image_size=8)
    g = torch.Generator().manual_seed(2)
    p = {k: v[None] for k, v in networks.init_params(spec, "large", g).items()}
    for i in (1, 2):  # non-trivial BN so a wrong index would change the output
        p[f"large.bn{i}.w"] = torch.rand(1, 6, generator=g) + 0.5
        p[f"large.bn{i}.b"] = torch.randn(1, 6, generator=g)
        p[f"stats.large.bn{i}.mean"] = torch.randn(1, 6, generator=g)
        p[f"stats.large.bn{i}.var"] = torch.rand(1, 6, generator=g) + 0.5
    tok = tokenize_large(p, spec)
    perm = torch.tensor([[3, 0, 5, 1, 4, 2]])
    moved = tok.gather(1, hidden_permutation(spec, perm)[..., None].expand_as(tok))
    assert not torch.equal(moved, tok)
    assert torch.equal(moved.sort(1).values, tok.sort(1).values)  # a reordering of the same tokens

    def run(t):
        q = {k: v[0] for k, v in detokenize_large(t, spec).items()}
        s = {k[6:]: v for k, v in q.items() if k.startswith("stats.")}
        return networks.large_forward(q, s, h, False, {})

    h = torch.rand(2, 6, 5, 5, generator=g)
    assert torch.allclose(run(moved), run(tok), atol=1e-6)
    assert torch.equal(moved[:, -6:], tok[:, -6:])  # BN2 acts on the block's outputs: not reordered
    scaled = hidden_rescale(tok, spec, torch.tensor([[0.5, 2.0, 1.0, 3.0, 0.25, 1.5]]))
    assert not torch.allclose(scaled, tok)
    assert torch.allclose(run(scaled), run(tok), atol=1e-5)


def test_context_tokens_read_begin_and_last_and_are_required():
    spec = networks.BlockSpec()
    g = torch.Generator().manual_seed(3)
    shared = {k: torch.stack([v, v * 2]) for k, v in networks.init_params(spec, "shared", g).items()}
    stats = {f"stats.{k}": torch.stack([v, v]) for k, v in networks.init_stats(spec, "small").items()}
    ctx = context_features({**shared, **stats}, spec)
    assert ctx.shape == (2, context_dim(spec))
    assert not torch.allclose(ctx[0], ctx[1])  # different blocks -> different context
    t = Translator(spec, "mixer", dim=16, depth=2, context=3)
    tok = tokenize_large(_fake_pairs(spec, 2), spec)
    out = t(tok, ctx)
    out.square().mean().backward()
    assert t.ctx.weight.grad is not None and t.ctx.weight.grad.abs().sum() > 0
    with pytest.raises(KdforgeError, match="context"):
        t(tok)
    with pytest.raises(KdforgeError, match="context"):
        Translator(spec, "mlp", context=2)


def test_set_translator_ignores_the_order_of_hidden_channels():
    spec = networks.BlockSpec()
    t = Translator(spec, "set", dim=16, depth=2).eval()
    tok = tokenize_large(_fake_pairs(spec, 4), spec)
    perm = torch.stack([torch.randperm(6, generator=torch.Generator().manual_seed(i)) for i in range(4)])
    moved = tok.gather(1, hidden_permutation(spec, perm)[..., None].expand_as(tok))
    assert torch.allclose(t(moved), t(tok), atol=1e-5)
    outer = tok.clone()
    outer[:, -6:] = outer[:, -6:].flip(1)  # BN2 rows (the block's outputs) are ordered: they matter
    assert not torch.allclose(t(outer), t(tok), atol=1e-3)

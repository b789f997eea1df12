"""OPDF wrapper: construction, alignment gradients, param groups, collapsed export, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from kdforge.config import load_recipe
from kdforge.data import iter_batches, load_dataset
from kdforge.errors import KdforgeError
from kdforge.layers import MPOLinear, SVDLinear
from kdforge.methods.opdf import OPDF
from kdforge.models import build_model
from kdforge.models.mlp import count_parameters, mlp
from kdforge.registry import METHODS

torch.set_num_threads(1)
SHAPE = (1, 8, 8)


def _models():
    torch.manual_seed(0)
    return mlp(SHAPE, 10, hidden=(16,)), mlp(SHAPE, 10, hidden=(64, 32))


def _batch(n: int = 8):
    g = torch.Generator().manual_seed(1)
    return {"x": torch.rand(n, *SHAPE, generator=g), "y": torch.randint(0, 10, (n,), generator=g)}


def _build(student, teacher, **kw):
    return OPDF.build(student, teacher, kw, example_batch=_batch())


def test_opdf_kd_wraps_and_aligns_with_default_layer_map():
    student, teacher = _models()
    x = _batch()["x"]
    y0 = student(x)
    m = _build(student, teacher, base="kd", n=3, lambda_align=0.5)
    assert isinstance(m.student.blocks[0][0], MPOLinear)
    assert m.pairs == {"blocks.0.0": "blocks.1.0"}  # 1 student layer vs 2 teacher layers: r=2 -> 1
    torch.testing.assert_close(m.student(x), y0, atol=1e-5, rtol=1e-4)  # exact at start
    logits, losses = m.training_step(_batch())
    assert set(losses) == {"ce", "kd", "align"}
    assert losses["align"].item() > 0
    sum(losses.values()).backward()
    core0 = m.student.blocks[0][0].cores[0]
    assert core0.grad is not None and core0.grad.abs().sum() > 0
    assert all(p.grad is None for p in m.teacher.parameters())


def test_alignment_gradient_moves_aux_tensors_towards_teacher():
    student, teacher = _models()
    m = _build(student, teacher, base="kd", n=3, lambda_align=1.0)
    opt = torch.optim.Adam(m.trainable_parameters(), lr=0.02)
    first = None
    for _ in range(20):
        align = m.training_step(_batch())[1]["align"]
        first = first if first is not None else align.item()
        opt.zero_grad()
        align.backward()
        opt.step()
    assert align.item() < 0.5 * first


def test_without_alignment_no_term_and_svd_variant():
    student, teacher = _models()
    m = _build(student, teacher, base="kd", n=3)
    assert set(m.training_step(_batch())[1]) == {"ce", "kd"}
    s2, t2 = _models()
    m2 = _build(s2, t2, base="fitnet", overparam="svd", base_kwargs={"student_path": "blocks.0"})
    assert isinstance(m2.student.blocks[0][0], SVDLinear)
    assert set(m2.training_step(_batch())[1]) == {"ce", "hint"}


def test_param_groups_and_export_collapse():
    student, teacher = _models()
    plain_params = count_parameters(student)
    m = _build(student, teacher, base="fitnet", n=3, mpo_lr_scale=0.1, lambda_align=0.1, base_kwargs={})
    groups = m.param_groups(1e-3)
    assert [g["lr"] for g in groups] == [pytest.approx(1e-4), 1e-3]
    assert sum(p.numel() for p in groups[0]["params"]) == sum(c.numel() for c in m.layers["blocks.0.0"].cores)
    assert any(p is m.base.regressor.weight for p in groups[1]["params"])  # base extras are trained
    assert m.train_time_parameters() > plain_params
    opt = torch.optim.Adam(groups)
    for _ in range(3):
        loss = sum(m.training_step(_batch())[1].values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = m.export()
    assert type(out.blocks[0][0]) is nn.Linear
    assert count_parameters(out) == plain_params
    x = _batch()["x"]
    torch.testing.assert_close(out(x), m.student(x), atol=1e-5, rtol=1e-5)
    state = m.checkpoint_state()
    assert not any(
        k.startswith(("teacher.", "base.")) or ".teacher." in k for k in state if "regressor" not in k
    )
    m.load_checkpoint_state(state)


def test_errors():
    student, teacher = _models()
    with pytest.raises(KdforgeError, match="matches no nn.Linear"):
        _build(student, teacher, patterns=["encoder.*"])
    with pytest.raises(KdforgeError, match=r"alignment \(lambda_align, layer_map\) needs MPO"):
        _build(*_models(), overparam="svd", lambda_align=1.0)
    # head (10x16) vs teacher head (10x32): proposed factorizations match bonds and align ...
    assert _build(*_models(), patterns=["head"], n=3, lambda_align=1.0).pairs == {"head": "head"}
    # ... explicit student factors that leave the outer factors unmatched -> named mismatch
    with pytest.raises(KdforgeError, match=r"student 'head'\.cores\.\d .* vs teacher 'head'"):
        _build(
            *_models(), patterns=["head"], n=3, lambda_align=1.0, factors={"head": [[10, 1, 1], [16, 1, 1]]}
        )
    with pytest.raises(KdforgeError, match="outside the matched"):
        _build(*_models(), lambda_align=1.0, layer_map={"blocks.0.0": "nope"})


def test_short_real_training_improves_and_exports_plain():
    data = load_dataset("digits", subset=400)
    student, teacher = _models()
    # the test teacher is untrained: distil with alpha=0 (labels only) to check the student learns
    m = _build(student, teacher, base="kd", n=3, lambda_align=0.1, base_kwargs={"alpha": 0.0})
    opt = torch.optim.Adam(m.param_groups(1e-2))
    for epoch in range(8):
        for batch in iter_batches(data.train, 64, seed=0, epoch=epoch):
            loss = sum(m.training_step(batch)[1].values())
            opt.zero_grad()
            loss.backward()
            opt.step()
    out = m.export().eval()
    acc = (out(data.test.tensors["x"]).argmax(1) == data.test.tensors["y"]).float().mean().item()
    assert acc > 0.5  # 10 classes: chance is 0.1


def test_layer_map_fixes_factors_without_alignment():
    shapes = {}
    for lam in (0.0, 1.0):
        student, teacher = _models()
        m = _build(student, teacher, n=3, lambda_align=lam, layer_map={"blocks.0.0": "blocks.0.0"})
        shapes[lam] = [tuple(c.shape) for c in m.layers["blocks.0.0"].cores]
        assert ("align" in m.training_step(_batch())[1]) == (lam > 0)
    assert shapes[0.0] == shapes[1.0]


OPDF_RECIPES = sorted(
    p
    for p in (Path(__file__).parents[1] / "configs" / "opdf").glob("*_*.yaml")
    if not p.stem.startswith(("nlp_", "teacher", "_"))  # _*.yaml: shared parts (bases), not recipes
)


@pytest.mark.parametrize("path", OPDF_RECIPES, ids=[p.stem for p in OPDF_RECIPES])
def test_vision_recipes_build_and_step(path):
    """Each grid recipe builds and steps (random 28x28 data, untrained teacher)."""
    cfg = load_recipe(path)
    torch.manual_seed(0)
    student = build_model(cfg.student.name, (1, 28, 28), 10, **cfg.student.kwargs)
    teacher = build_model(cfg.teacher.name, (1, 28, 28), 10, **cfg.teacher.kwargs)
    batch = {"x": torch.rand(4, 1, 28, 28), "y": torch.tensor([0, 1, 2, 3])}
    m = METHODS.get(cfg.method.name).build(student, teacher, cfg.method.kwargs, batch)
    _, losses = m.training_step(batch)
    assert ("align" in losses) == (cfg.method.kwargs.get("lambda_align", 0) > 0)
    plain = build_model(cfg.student.name, (1, 28, 28), 10, **cfg.student.kwargs)
    exported = m.export()
    assert [type(x) for x in exported.modules()] == [type(x) for x in plain.modules()]
    assert count_parameters(exported) == count_parameters(plain)  # the plain student's size
    if cfg.method.kwargs.get("base") == "theseus" and cfg.method.kwargs.get("layer_map"):
        # successors are aligned with teacher layers of exactly their shape (same width)
        for s_name, t_name in cfg.method.kwargs["layer_map"].items():
            assert plain.get_submodule(s_name).weight.shape == teacher.get_submodule(t_name).weight.shape


@pytest.mark.parametrize("name", ["teacher", "teacher_theseus"])
def test_vision_teacher_recipes_fit_their_students(name):
    """Each teacher recipe trains the architecture its student recipes load; Theseus's splits evenly."""
    d = Path(__file__).parents[1] / "configs" / "opdf"
    cfg = load_recipe(d / f"{name}.yaml")
    assert cfg.teacher is None and cfg.method.name == "supervised" and cfg.data.subset is None
    users = [load_recipe(p) for p in OPDF_RECIPES]
    users = [u for u in users if u.teacher.checkpoint == f"runs/opdf/{name}/student.safetensors"]
    assert users and all(u.teacher.kwargs == cfg.student.kwargs for u in users)
    if name == "teacher_theseus":
        assert all(u.method.kwargs.get("base", u.method.name) == "theseus" for u in users)
        t_hidden, s_hidden = cfg.student.kwargs["hidden"], users[0].student.kwargs["hidden"]
        assert len(t_hidden) % len(s_hidden) == 0 and set(t_hidden) == set(s_hidden)


def test_without_teacher_wraps_supervised_and_alignment_needs_teacher():
    student, _ = _models()
    m = OPDF.build(student, None, {"base": "supervised", "n": 3}, example_batch=_batch())
    assert set(m.training_step(_batch())[1]) == {"ce"}
    with pytest.raises(KdforgeError, match="needs a teacher"):
        OPDF.build(_models()[0], None, {"base": "supervised", "lambda_align": 1.0})
    with pytest.raises(KdforgeError, match="needs a teacher"):
        OPDF.build(_models()[0], None, {"base": "kd"})  # the base method's own check

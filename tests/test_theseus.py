"""BERT-of-Theseus: curriculum golden values, replacement semantics, initialisation, errors."""

from __future__ import annotations

import pytest
import torch

from kdforge.errors import KdforgeError
from kdforge.methods.opdf import OPDF
from kdforge.methods.theseus import Theseus, replacement_rate
from kdforge.models.mlp import mlp

torch.set_num_threads(1)
SHAPE = (1, 8, 8)


def _batch(n: int = 6):
    g = torch.Generator().manual_seed(0)
    return {"x": torch.rand(n, *SHAPE, generator=g), "y": torch.randint(0, 10, (n,), generator=g)}


def _pair():
    torch.manual_seed(0)
    return mlp(SHAPE, 10, hidden=(16, 16)), mlp(SHAPE, 10, hidden=(16, 16, 16, 16))


def test_replacement_rate_curriculum():
    assert replacement_rate(0, 100, 0.5, None, 0.5) == 0.5
    assert replacement_rate(25, 100, 0.5, None, 0.5) == pytest.approx(0.75)
    assert replacement_rate(50, 100, 0.5, None, 0.5) == 1.0
    assert replacement_rate(90, 100, 0.5, None, 0.5) == 1.0
    assert replacement_rate(10, 100, 0.3, 0.01, 0.5) == pytest.approx(0.4)


def test_groups_init_and_mixed_forward_semantics():
    student, teacher = _pair()
    m = Theseus.build(student, teacher, {}, example_batch=_batch())
    assert m.groups == [[0, 1], [2, 3]]
    # successor i starts as the first teacher layer of its group; head copied from the teacher
    torch.testing.assert_close(student.blocks[1][0].weight, teacher.blocks[2][0].weight)
    torch.testing.assert_close(student.head.weight, teacher.head.weight)
    x = {"x": _batch()["x"]}
    # nothing replaced: the teacher's whole stack runs inside the student's embedding/head = teacher
    torch.testing.assert_close(m._mixed_forward(x, [False, False]), teacher(**x))
    torch.testing.assert_close(m._mixed_forward(x, [True, True]), student(**x))
    assert isinstance(student.blocks, torch.nn.ModuleList) and len(student.blocks) == 2  # restored


def test_training_step_grads_only_reach_student_and_p1_is_student_alone():
    student, teacher = _pair()
    m = Theseus.build(student, teacher, {"p0": 0.0}, example_batch=_batch())
    m.on_step_start(0, 10)
    logits, losses = m.training_step(_batch())  # p = 0: all teacher groups
    torch.testing.assert_close(logits, teacher(**{"x": _batch()["x"]}))
    losses["ce"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert student.blocks[0][0].weight.grad is None and student.head.weight.grad is not None
    m.on_step_start(10, 10)
    assert m.p == 1.0
    logits, _ = m.training_step(_batch())
    torch.testing.assert_close(logits, student(**{"x": _batch()["x"]}))


def test_errors():
    torch.manual_seed(0)
    with pytest.raises(KdforgeError, match="equal groups"):
        Theseus.build(mlp(SHAPE, 10, hidden=(16, 16, 16)), mlp(SHAPE, 10, hidden=(16, 16, 16, 16)), {})
    with pytest.raises(KdforgeError, match="no layer list.*'encoder.layer'"):
        Theseus.build(*_pair(), {"student_layers": "encoder.layer"})
    with pytest.raises(KdforgeError, match="teacher's width"):
        Theseus.build(
            mlp(SHAPE, 10, hidden=(8,)), mlp(SHAPE, 10, hidden=(16, 16)), {}, example_batch=_batch()
        )


def test_opdf_wraps_theseus_and_exports_plain():
    student, teacher = _pair()
    m = OPDF.build(student, teacher, {"base": "theseus", "n": 3, "lambda_align": 0.1}, example_batch=_batch())
    assert m.pairs == {"blocks.0.0": "blocks.1.0", "blocks.1.0": "blocks.3.0"}
    # the successor was initialised from the teacher before being swapped for its MPO form
    torch.testing.assert_close(
        m.student.blocks[1][0].weight_matrix(), teacher.blocks[2][0].weight, atol=1e-5, rtol=0
    )
    m.on_step_start(0, 4)
    sum(m.training_step(_batch())[1].values()).backward()
    out = m.export()
    assert type(out.blocks[0][0]) is torch.nn.Linear


@pytest.mark.parametrize("wrap", [False, True])
def test_checkpoint_state_holds_each_student_tensor_once_and_saves(tmp_path, wrap):
    """The layer list's parent is not registered as a module of the method: no shared-tensor
    aliases in the checkpoint (safetensors refuses them), round-trip restores the student."""
    from safetensors.torch import load_file, save_file

    student, teacher = _pair()
    if wrap:
        m = OPDF.build(student, teacher, {"base": "theseus", "n": 3}, example_batch=_batch())
    else:
        m = Theseus.build(student, teacher, {}, example_batch=_batch())
    state = m.checkpoint_state()
    assert not any("_parent" in k for k in state)
    assert len({v.data_ptr() for v in state.values()}) == len(state)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "m.safetensors"))
    m.load_checkpoint_state(load_file(str(tmp_path / "m.safetensors")))
    m.on_step_start(0, 4)
    m.training_step(_batch())  # the looked-up parent still swaps the stack


def test_replacement_is_drawn_from_the_shared_stream_only():
    """Processes with different global RNG states (each seeds its own) replace the same groups
    when their ``shared_rng`` is seeded alike, and other shared seeds give other choices."""
    student, teacher = _pair()
    m = Theseus.build(student, teacher, {"p0": 0.5}, example_batch=_batch())
    m.train()
    drawn = {}
    for rank in (0, 1):
        picks = []
        for step in range(12):
            torch.manual_seed(1000 * rank + step)  # a per-process stream, as the engine seeds it
            m.shared_rng.manual_seed(step)
            logits, _ = m.training_step(_batch())
            picks.append(logits.detach())
        drawn[rank] = picks
    assert all(torch.equal(a, b) for a, b in zip(drawn[0], drawn[1], strict=True))
    assert len({tuple(p.flatten()[:3].tolist()) for p in drawn[0]}) > 1  # several replacement patterns

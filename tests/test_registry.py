"""Every registered method and model gets forward/backward/state-dict round-trip tests.

A new method must add a builder to ``METHOD_SETUPS`` (the coverage test fails otherwise).
"""

from __future__ import annotations

import pytest
import torch

from kdforge.data import load_dataset
from kdforge.data._batches import iter_batches
from kdforge.errors import KdforgeError
from kdforge.methods._base import Method
from kdforge.models import build_model
from kdforge.registry import METHODS, MODELS, list_methods, list_models

SPLITS = load_dataset("digits")
BATCH = next(iter_batches(SPLITS.train, 16))


def _mlp(hidden):
    return build_model("mlp", SPLITS.input_shape, SPLITS.num_classes, hidden=hidden)


def _plain(name, **kwargs):
    def setup():
        return METHODS.get(name).build(_mlp([16]), _mlp([32]), kwargs, BATCH)

    return setup


# name -> zero-argument builder of a small method instance on 8x8 digits batches
METHOD_SETUPS = {
    "supervised": lambda: METHODS.get("supervised").build(_mlp([16]), None, {}, BATCH),
    "kd": _plain("kd", temperature=3.0, alpha=0.5),
    "fitnet": _plain("fitnet", student_path="blocks.0", teacher_path="blocks.0"),
    "opdf": _plain("opdf", base="kd", n=3, lambda_align=0.1),
    "theseus": lambda: METHODS.get("theseus").build(_mlp([16, 16]), _mlp([16, 16, 16, 16]), {}, BATCH),
    "adkd": _plain("adkd", steps=2, top_k=2),
    "east": lambda: _with_batch(
        METHODS.get("east").build(_mlp([16]), None, {"student_path": "blocks.0", "d": 4}, EAST_BATCH),
        EAST_BATCH,
    ),
}
# methods whose training batches carry extra tensors (e.g. cached teacher embeddings)
EAST_BATCH = {**BATCH, "teacher_emb": torch.randn(16, 12, generator=torch.Generator().manual_seed(0))}
TEXT_MODELS = {"text_cnn", "tiny_transformer", "minilm_classifier", "minilm_student", "minilm_narrow"}
AUDIO_MODELS = {"ge2e_classifier"}  # log-mel models: [1, 40 mel channels, frames]


def _audio_weights_or_skip() -> None:
    from kdforge.models.audio_teachers import resemblyzer_weights

    try:
        resemblyzer_weights()
    except KdforgeError as e:
        pytest.skip(f"GE2E weights not installed: {e.fix}")


def _with_batch(method: Method, batch) -> Method:
    method._test_batch = batch
    return method


def test_every_registered_method_has_a_test_setup():
    assert sorted(METHOD_SETUPS) == list_methods()


@pytest.fixture(params=list_methods())
def method(request) -> Method:
    torch.manual_seed(0)
    return METHOD_SETUPS[request.param]()


def test_training_step_backward(method):
    method.train()
    out, losses = method.training_step(dict(getattr(method, "_test_batch", BATCH)))
    assert out.shape == (16, SPLITS.num_classes)
    assert losses and all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    trainable = method.trainable_parameters()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)


def test_teacher_frozen_and_out_of_optimizer_and_checkpoint(method):
    method.train()
    if method.teacher is not None:
        assert not method.teacher.training
        assert all(not p.requires_grad for p in method.teacher.parameters())
        teacher_ids = {id(p) for p in method.teacher.parameters()}
        assert not teacher_ids & {id(p) for g in method.param_groups(1e-3) for p in g["params"]}
    assert not any(k.startswith("teacher.") for k in method.checkpoint_state())


def test_checkpoint_state_roundtrip(method):
    state = {k: v.clone() for k, v in method.checkpoint_state().items()}
    out1 = method.predict(BATCH)
    torch.manual_seed(123)
    fresh = type(method)(*_rebuild_args(method))
    fresh.load_checkpoint_state(state)
    assert torch.equal(fresh.predict(BATCH), out1)


def _rebuild_args(method):
    import copy

    student = copy.deepcopy(method.student)
    for p in student.parameters():
        torch.nn.init.normal_(p)
    return student, method.teacher, method.config, getattr(method, "_test_batch", BATCH)


def test_checkpoint_from_another_architecture_is_refused(method):
    bad = {k: torch.zeros(1) for k in method.checkpoint_state()}
    with pytest.raises(KdforgeError, match="shape"):
        method.load_checkpoint_state(bad)
    with pytest.raises(KdforgeError, match="does not fit"):
        method.load_checkpoint_state({})


def test_unknown_method_and_option():
    with pytest.raises(KdforgeError, match="unknown method 'kdd'.*kd"):
        METHODS.get("kdd")
    with pytest.raises(KdforgeError, match="temperatur"):
        METHODS.get("kd").build(_mlp([8]), _mlp([8]), {"temperatur": 2}, BATCH)
    with pytest.raises(KdforgeError, match="needs a teacher"):
        METHODS.get("kd").build(_mlp([8]), None, {}, BATCH)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28)])
def test_models_forward_backward_roundtrip(name, shape):
    torch.manual_seed(0)
    if name in TEXT_MODELS:  # token-id models: one input shape (max_len,)
        if shape != (1, 8, 8):
            pytest.skip("text models take token ids; tested once with (max_len,)")
        shape = (16,)
        ids = torch.randint(1, 1000, (4, 16))
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    elif name in AUDIO_MODELS:
        if shape != (1, 8, 8):
            pytest.skip("audio models take 40-channel log-mels; tested once with (1, 40, 101)")
        _audio_weights_or_skip()
        shape = (1, 40, 101)
        inputs = {"x": torch.randn(4, *shape)}
    else:
        inputs = {"x": torch.rand(4, *shape)}
    model = build_model(name, shape, 10)
    y = model(**inputs)
    assert y.shape == (4, 10)
    y.sum().backward()
    model2 = build_model(name, shape, 10)
    model2.load_state_dict(model.state_dict())
    model.eval(), model2.eval()
    assert torch.equal(model(**inputs), model2(**inputs))
    assert MODELS.get(name).__doc__


def test_model_bad_kwargs():
    with pytest.raises(KdforgeError, match="no option 'hiden'.*hidden"):
        build_model("mlp", (1, 8, 8), 10, hiden=[3])

"""Narrower BERT students by weight selection: exact selection, query scaling, OPDF across widths."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import BertConfig, BertModel

from kdforge.errors import KdforgeError
from kdforge.layers import BERT_PATTERNS, collapse
from kdforge.methods.opdf import OPDF
from kdforge.models.bert_narrow import narrow_bert, select_every
from kdforge.models.hf import HFClassifier, keep_layers

torch.set_num_threads(1)


def _bert(layers: int = 2, hidden: int = 16, heads: int = 2, seed: int = 0) -> HFClassifier:
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=50,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=16,
    )
    return HFClassifier(BertModel(cfg, add_pooling_layer=False), hidden, 3).eval()


def _inputs(seed: int = 1) -> dict[str, torch.Tensor]:
    ids = torch.randint(1, 50, (4, 8), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    return {"input_ids": ids * mask, "attention_mask": mask}


def test_select_every_takes_strided_elements_only_on_shrunk_axes():
    t = torch.arange(24.0).reshape(4, 6)
    assert torch.equal(select_every(t, torch.Size([2, 6]), 2), t[::2])
    assert torch.equal(select_every(t, torch.Size([2, 3]), 2), t[::2, ::2])
    assert torch.equal(select_every(t, t.shape, 2), t)


def test_factor_one_is_an_exact_copy():
    model = _bert()
    copy = narrow_bert(model, 1)
    torch.testing.assert_close(copy(**_inputs()), model(**_inputs()), atol=0, rtol=0)
    copy.head.weight.data.add_(1.0)
    assert not torch.equal(copy.head.weight, model.head.weight)  # a copy, not shared


def test_factor_two_selects_every_other_dim_keeps_heads_and_scales_queries():
    model = _bert(hidden=16, heads=2)
    model.encoder.embeddings.word_embeddings.weight.requires_grad_(False)
    small = narrow_bert(model, 2)
    cfg = small.encoder.config
    assert (cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size) == (8, 2, 32)
    big, sm = model.state_dict(), small.state_dict()
    key = "encoder.encoder.layer.1.intermediate.dense.weight"
    assert torch.equal(sm[key], big[key][::2, ::2])  # (64, 16) -> (32, 8)
    q = "encoder.encoder.layer.0.attention.self.query.weight"
    torch.testing.assert_close(sm[q], big[q][::2, ::2] * math.sqrt(2))
    # head h of the narrow model (4 dims) holds dims 0, 2, 4, 6 of the wide model's head h (8 dims)
    k = "encoder.encoder.layer.0.attention.self.key.weight"
    for h in range(2):
        assert torch.equal(sm[k][4 * h : 4 * h + 4], big[k][8 * h : 8 * h + 8 : 2, ::2])
    assert torch.equal(sm["head.weight"], big["head.weight"][:, ::2])
    assert not small.encoder.embeddings.word_embeddings.weight.requires_grad  # freezing carried over
    assert small(**_inputs()).shape == (4, 3)


def test_a_factor_that_does_not_divide_the_widths_is_refused():
    with pytest.raises(KdforgeError, match="width factor 3 does not divide") as e:
        narrow_bert(_bert(hidden=16, heads=2), 3)
    assert "e.g. 2 or 4" in e.value.fix


def test_opdf_aligns_a_narrow_student_with_a_wide_teacher_and_exports_plain():
    teacher = _bert(layers=4, hidden=16, heads=2)
    student = narrow_bert(keep_layers(teacher, [1, 3]), 2)
    b = {**_inputs(), "y": torch.tensor([0, 1, 2, 0])}
    m = OPDF.build(student, teacher, {"patterns": list(BERT_PATTERNS), "n": 3, "lambda_align": 1.0}, b)
    assert len(m.pairs) == 12
    for s_name, t_name in m.pairs.items():  # every auxiliary (non-central) tensor matches in shape
        s_cores, t_cores = list(m.layers[s_name].cores), m.teacher_cores(t_name)
        assert [c.shape for i, c in enumerate(s_cores) if i != 1] == [
            c.shape for i, c in enumerate(t_cores) if i != 1
        ]
    _, losses = m.training_step(b)
    assert losses["align"].item() > 0
    losses["align"].backward()
    assert any(c.grad is not None and c.grad.abs().sum() > 0 for c in m.layers[s_name].cores)
    plain = m.export()
    assert type(plain.encoder.encoder.layer[0].attention.self.query) is torch.nn.Linear
    torch.testing.assert_close(plain(**_inputs()), collapse(m.student)(**_inputs()), atol=1e-5, rtol=1e-5)


def test_the_ablation_without_alignment_trains_the_aligned_runs_parameterization():
    teacher = _bert(layers=4, hidden=16, heads=2)
    b = {**_inputs(), "y": torch.tensor([0, 1, 2, 0])}
    shapes = {}
    for lam in (1.0, 0.0):
        student = narrow_bert(keep_layers(teacher, [1, 3]), 2)
        m = OPDF.build(student, teacher, {"patterns": list(BERT_PATTERNS), "n": 3, "lambda_align": lam}, b)
        shapes[lam] = {k: [tuple(c.shape) for c in layer.cores] for k, layer in m.layers.items()}
        assert ("align" in m.training_step(b)[1]) == bool(lam)
    assert shapes[0.0] == shapes[1.0]
    student = narrow_bert(keep_layers(teacher, [1, 3]), 2)  # without the teacher-matched factors they differ
    plain = OPDF.build(student, None, {"base": "supervised", "patterns": list(BERT_PATTERNS), "n": 3}, b)
    assert {k: [tuple(c.shape) for c in v.cores] for k, v in plain.layers.items()} != shapes[1.0]

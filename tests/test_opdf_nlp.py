"""OPDF on BERT students: layer keeping, block-wise layer map, teacher cores as buffers, teacher
output cache, over-parameterized checkpoints refused by the engine. Tiny random BERTs only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import BertConfig, BertModel

from kdforge.config import load_recipe
from kdforge.data._batches import TensorData
from kdforge.data.vision import Splits
from kdforge.engine.teacher_cache import PROBE_SIZE, attach_teacher_outputs
from kdforge.errors import KdforgeError
from kdforge.io import load_weights
from kdforge.layers import BERT_PATTERNS, collapse
from kdforge.methods.opdf import OPDF
from kdforge.models.hf import HFClassifier, keep_layers
from kdforge.registry import METHODS

torch.set_num_threads(1)


def _bert(layers: int, seed: int = 0) -> HFClassifier:
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    return HFClassifier(BertModel(cfg, add_pooling_layer=False), 16, 2).eval()


def _batch(n: int = 4, t: int = 8, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 50, (n, t), generator=g)
    mask = torch.ones(n, t, dtype=torch.int64)
    mask[0, 5:] = 0  # some padding
    mask[1, 3:] = 0
    return {"input_ids": ids * mask, "attention_mask": mask, "y": torch.randint(0, 2, (n,), generator=g)}


def test_padding_columns_are_trimmed_without_changing_outputs():
    model, b = _bert(2), _batch()
    b["attention_mask"][:, 6:] = 0  # the last two columns are padding everywhere
    b["input_ids"] = b["input_ids"] * b["attention_mask"]
    enc = model.encoder(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
    full = model.head(model.pool(enc, b["attention_mask"]))  # untrimmed reference
    torch.testing.assert_close(model(b["input_ids"], b["attention_mask"]), full, atol=1e-5, rtol=1e-5)


def test_keep_layers_copies_the_chosen_teacher_layers():
    teacher = _bert(6)
    student = keep_layers(teacher, [1, 3, 5])
    assert len(student.encoder.encoder.layer) == 3 and len(teacher.encoder.encoder.layer) == 6
    for i, j in enumerate([1, 3, 5]):
        s, t = student.encoder.encoder.layer[i].state_dict(), teacher.encoder.encoder.layer[j].state_dict()
        assert all(torch.equal(s[k], t[k]) for k in t)
    assert torch.equal(student.head.weight, teacher.head.weight)
    student.head.weight.data.add_(1.0)  # a copy, not a view
    assert not torch.equal(student.head.weight, teacher.head.weight)
    b = _batch()
    assert student(b["input_ids"], b["attention_mask"]).shape == (4, 2)
    with pytest.raises(KdforgeError, match=r"cannot keep encoder layers \[6\]"):
        keep_layers(teacher, [6])


def test_default_layer_map_pairs_bert_blocks_not_flat_layer_lists():
    teacher = _bert(4)
    student = keep_layers(teacher, [1, 3])
    m = OPDF.build(student, teacher, {"patterns": list(BERT_PATTERNS), "n": 3, "lambda_align": 1.0}, _batch())
    assert len(m.pairs) == 12  # 2 blocks x (q, k, v, attn out, ffn in, ffn out)
    for s, t in m.pairs.items():
        s_block, t_block = int(s.split(".")[3]), int(t.split(".")[3])
        assert t_block == 2 * s_block + 1  # l -> l*r + r - 1 with r = 2
        assert s.split(".")[4:] == t.split(".")[4:]  # query with query, FFN with FFN
    # the student *is* teacher layers 1 and 3, and SVD signs are deterministic: zero alignment
    _, losses = m.training_step(_batch())
    assert losses["align"].item() < 1e-10


def test_teacher_cores_are_non_persistent_buffers_that_follow_to():
    teacher = _bert(2)
    student = keep_layers(teacher, [1])
    m = OPDF.build(student, teacher, {"patterns": list(BERT_PATTERNS), "n": 3, "lambda_align": 1.0}, _batch())
    t_name = next(iter(m.pairs.values()))
    assert all(c.dtype == torch.float32 for c in m.teacher_cores(t_name))
    assert not any(k.startswith("_tcore") for k in m.state_dict())  # not checkpointed
    m.to(torch.float64)
    assert all(c.dtype == torch.float64 for c in m.teacher_cores(t_name))
    b = _batch()
    _, losses = m.training_step(b)  # no per-step conversion needed: everything is float64
    assert losses["align"].dtype == torch.float64


def test_teacher_cache_on_padded_sequences_is_exact_and_runs_the_teacher_once(tmp_path):
    """BERT inputs (ids + attention mask): the cache holds what KD reads, filled in one pass."""
    teacher, student = _bert(2, seed=3), _bert(1, seed=4)
    calls = []
    teacher.register_forward_hook(lambda mod, args, out: calls.append(len(out)))
    m = METHODS.get("opdf").build(student, teacher, {"base": "kd", "patterns": list(BERT_PATTERNS), "n": 3},
                                  _batch())  # fmt: skip
    train, val = _batch(6, seed=5), _batch(4, seed=6)
    splits = Splits(TensorData(train), TensorData(val), TensorData(val), 2, (8,), "toy_text")
    calls.clear()
    out = attach_teacher_outputs(m, splits, "opdf", root=tmp_path, progress=False)
    probe = min(PROBE_SIZE, 6)
    assert calls == [probe, probe, 10]  # two determinism probes, then one fill pass of the 10 distinct
    torch.testing.assert_close(
        out.tensors["teacher_out:logits"], m.teacher_forward(train), atol=1e-5, rtol=1e-5
    )
    calls.clear()
    again = attach_teacher_outputs(m, splits, "opdf", root=tmp_path, progress=False)
    assert calls == [probe, probe]  # served from disk
    assert torch.equal(again.tensors["teacher_out:logits"], out.tensors["teacher_out:logits"])
    batch = {k: v[:4] for k, v in out.tensors.items()}
    _, cached = m.training_step(batch)  # OPDF's base KD reads the cached logits
    _, live = m.training_step({k: v for k, v in batch.items() if not k.startswith("teacher_out:")})
    assert set(cached) == {"ce", "kd"}
    torch.testing.assert_close(cached["kd"], live["kd"], atol=1e-5, rtol=1e-5)


def test_engine_refuses_an_overparameterized_checkpoint_with_the_specific_message(tmp_path):
    teacher = _bert(2)
    student = keep_layers(teacher, [1])
    m = OPDF.build(student, teacher, {"patterns": list(BERT_PATTERNS), "n": 3}, _batch())
    big = {k: v.contiguous() for k, v in m.student.state_dict().items()}
    save_file(big, str(tmp_path / "big.safetensors"))
    plain = keep_layers(teacher, [1])
    with pytest.raises(KdforgeError, match=r"student checkpoint .* is over-parameterized.*query") as e:
        load_weights(plain, tmp_path / "big.safetensors", "student")
    assert "collapse" in e.value.fix
    small = {k: v.contiguous() for k, v in collapse(m.student).state_dict().items()}
    save_file(small, str(tmp_path / "small.safetensors"))
    load_weights(plain, tmp_path / "small.safetensors", "student")  # the collapsed one loads
    b = _batch()
    torch.testing.assert_close(
        plain(b["input_ids"], b["attention_mask"]),
        m.student(b["input_ids"], b["attention_mask"]),
        atol=1e-5,
        rtol=1e-5,
    )


_NLP_DIR = Path(__file__).parents[1] / "configs" / "opdf"
NLP_RECIPES = sorted(p for p in _NLP_DIR.glob("nlp_*_*.yaml") if p.stem != "nlp_teacher")


@pytest.mark.parametrize("path", NLP_RECIPES, ids=[p.stem for p in NLP_RECIPES])
def test_nlp_recipes_build_and_step(path):
    """Each NLP grid recipe's method options build and step on tiny BERT stand-ins (6 -> layers 1, 3, 5)."""
    cfg = load_recipe(path)
    shifted = path.stem.endswith("_shift")  # the alignment ablation's student: layers 0, 2, 4
    assert cfg.student.kwargs["layers"] == ([0, 2, 4] if shifted else [1, 3, 5])
    assert cfg.teacher.name == "minilm_classifier"
    teacher = _bert(6)
    student = keep_layers(teacher, cfg.student.kwargs["layers"])
    m = METHODS.get(cfg.method.name).build(student, teacher, cfg.method.kwargs, _batch())
    m.on_step_start(0, 20)
    _, losses = m.training_step(_batch())
    assert ("align" in losses) == (cfg.method.kwargs.get("lambda_align", 0) > 0)
    exported = m.export()
    assert sum(p.numel() for p in exported.parameters()) == sum(
        p.numel() for p in keep_layers(teacher, [1, 3, 5]).parameters()
    )


@pytest.mark.parametrize(("layers", "starts_at_zero"), [([1, 3, 5], True), ([0, 2, 4], False)])
def test_alignment_starts_at_zero_only_for_a_student_made_of_the_aligned_layers(layers, starts_at_zero):
    """nlp_kd_opdf_shift's student (layers 0, 2, 4, aligned with 1, 3, 5) starts with a non-zero
    alignment loss, so alignment on/off can differ; with layers 1, 3, 5 it starts at 0."""
    cfg = load_recipe(_NLP_DIR / "nlp_kd_opdf_shift.yaml")
    teacher = _bert(6)
    student = keep_layers(teacher, layers)
    m = METHODS.get(cfg.method.name).build(student, teacher, cfg.method.kwargs, _batch())
    m.on_step_start(0, 20)
    _, losses = m.training_step(_batch())
    assert (float(losses["align"].detach()) < 1e-8) == starts_at_zero


def test_theseus_on_bert_groups_pass_the_attention_mask_and_match_the_teacher():
    """Theseus with every group run by the teacher's layers reproduces the 6-layer teacher on a
    padded batch (the mask reaches each teacher layer); successors alone are the 3-layer student."""
    teacher = _bert(6)
    student = keep_layers(teacher, [1, 3, 5])
    paths = {"student_layers": "encoder.encoder.layer", "teacher_layers": "encoder.encoder.layer"}
    m = METHODS.get("theseus").build(student, teacher, {**paths, "init_from_teacher": False}, _batch())
    assert m.groups == [[0, 1], [2, 3], [4, 5]]
    inputs = {k: v for k, v in _batch().items() if k != "y"}
    with torch.no_grad():
        torch.testing.assert_close(m._mixed_forward(inputs, [False] * 3), teacher(**inputs))
        torch.testing.assert_close(m._mixed_forward(inputs, [True] * 3), student(**inputs))
    m.on_step_start(0, 10)
    _, losses = m.training_step(_batch())
    losses["ce"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert student.encoder.encoder.layer[0].attention.self.query.weight.grad is not None

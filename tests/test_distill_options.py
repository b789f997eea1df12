"""`kdforge distill`: a head fitted for an hf: teacher without one, and method options (KEY=VALUE)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from kdforge.distill import (
    DistillConfig,
    TuningGrid,
    check_config,
    distill,
    fit_teacher_head,
    head_fitting_reason,
    make_arm_trials,
    parse_method_options,
    resolve_teacher,
)
from kdforge.errors import KdforgeError
from kdforge.registry import DATASETS
from test_model_reference import VOCAB, tiny_tokens

TEXT_STUDENT = {"emb": 8, "channels": [8], "kernel": 3}


@pytest.fixture
def text_data(monkeypatch):
    DATASETS.names()  # the built-in registrations first
    monkeypatch.setitem(DATASETS._items, "tiny_tokens", tiny_tokens)


@pytest.fixture(scope="module")
def bert_dirs(tmp_path_factory):
    """A tiny BERT encoder (no classification head) and a 3-class BERT classifier, saved offline."""
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    root = tmp_path_factory.mktemp("bert")
    config = dict(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=32, max_position_embeddings=16)  # fmt: skip
    torch.manual_seed(0)
    BertModel(BertConfig(**config)).save_pretrained(root / "encoder")
    BertForSequenceClassification(BertConfig(**config, num_labels=3)).save_pretrained(root / "cls3")
    BertForSequenceClassification(BertConfig(**config, num_labels=2)).save_pretrained(root / "cls2")
    return root


def _text_cfg(tmp_path, teacher, **over):
    base = dict(
        teacher=teacher,
        data="tiny_tokens",
        student="text_cnn",
        student_kwargs=TEXT_STUDENT,
        steps=8,
        batch_size=16,
        evaluations=1,
        head_steps=20,
        head_lr=0.01,
        grid=TuningGrid(lr=[0.01], temperature=[2.0], alpha=[0.9]),
        output_dir=str(tmp_path / "distill"),
        timing_batch=16,
    )
    return DistillConfig(**{**base, **over})


def test_which_hf_teachers_need_a_head(bert_dirs):
    def reason(directory, classes=2, **kwargs):
        teacher = {"name": f"hf:{bert_dirs / directory}", "kwargs": kwargs, "checkpoint": None}
        return head_fitting_reason(teacher, None, classes)

    assert "no trained classification head" in reason("encoder")
    assert "no trained classification head" in reason("cls2", head="new")
    assert "has 3 classes, the data 2" in reason("cls3")
    assert reason("cls2") is None and reason("cls3", classes=3) is None
    fitted = {"name": f"hf:{bert_dirs / 'encoder'}", "kwargs": {"head": "new"}, "checkpoint": "w.safetensors"}
    assert head_fitting_reason(fitted, None, 2) is None  # its own weights file holds a trained head
    assert "outputs 7 values" in head_fitting_reason({"name": "mlp", "kwargs": {}}, 7, 10)


def test_an_hf_encoder_teacher_gets_a_fitted_head_before_any_student_trains(tmp_path, bert_dirs, text_data):
    cfg = _text_cfg(tmp_path, f"hf:{bert_dirs / 'encoder'}")
    said: list[str] = []
    result = distill(cfg, progress=False, say=said.append)
    head = result["report"]["teacher_head"]
    assert head["fitted"] and "no trained classification head" in head["reason"]
    assert (head["head"], head["steps"], head["lr"]) == ("probe", 20, 0.01)
    assert any("fitting a head (probe, 20 steps, lr 0.01)" in m for m in said)
    # the students learnt from the fitted head: the teacher scored is the head run's export
    (run_dir,) = (tmp_path / "distill").glob("teacher_head-*-seed0")
    assert head["model"]["checkpoint"] == str(run_dir / "student.safetensors")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert result["teacher_scores"]["val_acc"] == pytest.approx(summary["val_acc"])
    kd_recipe = yaml.safe_load((tmp_path / "distill" / "runs" / result["selection"]["kd"]["runs"][0] /
                                "config.yaml").read_text())  # fmt: skip
    assert kd_recipe["teacher"]["checkpoint"] == str(run_dir / "student.safetensors")
    saved = yaml.safe_load((tmp_path / "distill" / "distill.yaml").read_text())
    assert (saved["head"], saved["head_steps"], saved["head_lr"]) == ("probe", 20, 0.01)


def test_probe_keeps_the_hf_encoder_and_finetuning_moves_it(tmp_path, bert_dirs, text_data):
    from transformers import BertModel

    original = BertModel.from_pretrained(bert_dirs / "cls3").state_dict()
    for n, head in enumerate(["probe", "finetune"], start=1):
        cfg = _text_cfg(tmp_path, f"hf:{bert_dirs / 'cls3'}", head=head)
        teacher, outputs = resolve_teacher(cfg)
        fitted = fit_teacher_head(cfg, teacher, outputs, progress=False, say=lambda _: None)
        assert fitted["kwargs"] == {"head": "new", "freeze_encoder": head == "probe"}
        state = load_file(fitted["checkpoint"])
        assert state["head.weight"].shape == (2, 16)
        same = all(
            torch.equal(state[f"encoder.{k}"], v) for k, v in original.items() if f"encoder.{k}" in state
        )
        assert same == (head == "probe")
        # another head setting trains anew instead of reusing the head fitted before
        assert len(list((tmp_path / "distill").glob("teacher_head-*"))) == n


def test_parse_method_options_for_all_or_one_method():
    assert parse_method_options(["temperature=3", "alpha=0.5"], ["kd"]) == {
        "kd": {"temperature": 3, "alpha": 0.5}
    }
    both = parse_method_options(["fitnet.student_path=blocks.1", "kd.temperature=2"], ["kd", "fitnet"])
    assert both == {"fitnet": {"student_path": "blocks.1"}, "kd": {"temperature": 2}}
    assert parse_method_options(["beta=[1]"], ["fitnet"]) == {"fitnet": {"beta": [1]}}
    with pytest.raises(KdforgeError, match="is not KEY=VALUE"):
        parse_method_options(["temperature"], ["kd"])


@pytest.mark.parametrize(
    ("methods", "options", "message"),
    [
        (
            ["fitnet"],
            {"fitnet": {"studentpath": "blocks.1"}},
            "valid keys .*student_path, teacher_path, beta",
        ),
        (["kd"], {"kd": {"temperature": "hot"}}, "temperature"),
        (["kd"], {"fitnet": {"beta": 2.0}}, "not among the methods"),
    ],
)
def test_bad_method_options_are_refused_before_training(tmp_path, methods, options, message):
    cfg = DistillConfig(teacher="t.safetensors", data="digits", methods=methods, method_options=options)
    with pytest.raises(KdforgeError, match=message):
        check_config(cfg)


def test_a_fixed_kd_temperature_is_not_tuned_and_the_budgets_stay_equal(tmp_path, digits_teacher):
    teacher, _ = digits_teacher
    grid = TuningGrid(lr=[0.01, 0.03], temperature=[2.0, 4.0], alpha=[0.9])
    common = dict(teacher=teacher["checkpoint"], data="digits", grid=grid, output_dir=str(tmp_path))
    tuned = make_arm_trials(DistillConfig(**common), resolve_teacher(DistillConfig(**common))[0])
    assert len(tuned["kd"]) == len(tuned["student_alone"]) == 4  # 2 lr x 2 T against 4 lr
    cfg = DistillConfig(**common, methods=["kd", "fitnet"],
                        method_options={"kd": {"temperature": 3.0}, "fitnet": {"beta": 2.0}})  # fmt: skip
    arms = make_arm_trials(cfg, resolve_teacher(cfg)[0])
    assert {len(t) for t in arms.values()} == {2}  # T fixed: 2 settings per arm
    for trial in arms["kd"]:
        assert trial.config.method.kwargs["temperature"] == 3.0
        assert "method.kwargs.temperature" not in trial.overrides
    assert all(t.config.method.kwargs == {"beta": 2.0} for t in arms["fitnet"])
